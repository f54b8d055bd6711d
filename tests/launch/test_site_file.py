"""The README's site file for a GPU cluster is valid: written to a `local/slurm.yaml` on the
config search path, it composes with `launcher=slurm`, every key lands in the Slurm launcher's
settings (hydra-submitit-launcher's own schema refuses unknown keys), and its values win over
configs/launcher/slurm.yaml's."""

from __future__ import annotations

import re

import yaml
from helpers import ROOT, compose_cfg

MARK = "# configs/local/slurm.yaml on a GPU cluster"


def test_the_readmes_gpu_cluster_site_file_composes(tmp_path):
    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if MARK in b]
    site = yaml.safe_load(block)["hydra"]["launcher"]
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "slurm.yaml").write_text(block)

    cfg = compose_cfg(["launcher=slurm", f"hydra.searchpath=[file://{tmp_path}]"], hydra_cfg=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.agr_slurm.SubmititSlurmLauncher"
    assert {key: launcher[key] for key in site} == site
    defaults = yaml.safe_load((ROOT / "configs" / "launcher" / "slurm.yaml").read_text())
    assert defaults["hydra"]["launcher"]["cpus_per_task"] == 8  # the README's stated default
