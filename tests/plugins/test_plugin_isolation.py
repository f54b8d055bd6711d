"""The suite's Hydra plugins (hydra_plugins/, installed with the suite) stay out of other Hydra
apps' way: Hydra imports every module under ``hydra_plugins`` when any app starts, so those
modules import nothing heavy and register no config groups; the suite registers its schema
itself, when it is imported."""

from __future__ import annotations

import ast
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore

from agr_suite.core.config import SCHEMA

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "hydra_plugins"
HEAVY = ("torch", "agr", "agr_suite", "timm", "transformers", "diffusers", "submitit", "wandb")

# A Hydra app of someone else's, in the suite's environment: one group, and a task that
# prints the modules its start-up imported.
APP = """\
import json, os, sys

import hydra

if os.environ.get("HIDE_SUITE_PLUGINS"):  # Hydra's plugin scan without the suite's plugins
    import hydra_plugins

    suite = [p for p in hydra_plugins.__path__ if os.path.isdir(os.path.join(p, "agr_run_list"))]
    assert suite, list(hydra_plugins.__path__)
    hydra_plugins.__path__ = [p for p in hydra_plugins.__path__ if p not in suite]


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    print("MODULES " + json.dumps(sorted(sys.modules)))


if __name__ == "__main__":
    main()
"""


def test_plugin_modules_import_nothing_heavy_at_module_level():
    """What Hydra's plugin scan executes: each plugin module's top level (imports inside
    functions run only when the suite's sweeper or launcher is used)."""
    modules = sorted(PLUGINS.rglob("*.py"))
    assert {m.parent.name for m in modules} >= {"agr_run_list", "agr_slurm"}
    for module in modules:
        tree = ast.parse(module.read_text())
        top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        names = {alias.name for node in top if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in top if isinstance(node, ast.ImportFrom)}
        heavy = sorted(n for n in names if n.split(".")[0] in HEAVY)
        assert not heavy, f"{module.relative_to(ROOT)} imports {heavy} when Hydra scans it"


def test_the_suite_registers_its_schema_under_its_own_name():
    """Everything the suite stores in Hydra's ConfigStore is under ``agr_suite_schema``
    (Hydra's own ``hydra`` and its placeholder aside): no generic ``schema`` group."""
    repo = ConfigStore.instance().repo
    ours = {name for name in repo if name not in ("hydra", "_dummy_empty_config_.yaml")}
    assert SCHEMA == "agr_suite_schema"
    assert ours == {"agr_suite_schema", "agr_suite_schema.yaml"}
    assert set(repo[SCHEMA]) == {"dataset", "model", "metrics"}


def _write_app(folder: Path) -> None:
    (folder / "conf" / "color").mkdir(parents=True)
    (folder / "app.py").write_text(APP)
    (folder / "conf" / "config.yaml").write_text("defaults:\n  - color: red\n  - _self_\nsize: 1\n")
    (folder / "conf" / "color" / "red.yaml").write_text("name: red\n")
    (folder / "conf" / "color" / "blue.yaml").write_text("name: blue\n")


def _run_app(folder: Path, *args: str, hide: bool = False) -> tuple[float, str]:
    """(wall seconds, stdout) of ``python app.py ARGS`` in ``folder``, in this environment
    (where the suite and its plugins are installed), nothing of the suite on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HIDE_SUITE_PLUGINS")}
    if hide:
        env["HIDE_SUITE_PLUGINS"] = "1"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    return seconds, result.stdout


def _modules(stdout: str) -> set[str]:
    (line,) = [line for line in stdout.splitlines() if line.startswith("MODULES ")]
    return set(json.loads(line.removeprefix("MODULES ")))


@pytest.mark.slow  # make test-slow: Hydra apps in subprocesses
def test_another_hydra_app_neither_sees_nor_pays_for_the_suite(tmp_path):
    _write_app(tmp_path)
    _, help_text = _run_app(tmp_path, "--help")
    assert "color: blue, red" in help_text
    for word in ("schema", "agr", "dataset", "experiment", "optimizer"):
        assert word not in help_text, word

    _, plain = _run_app(tmp_path)
    modules = _modules(plain)
    # the suite's plugins were scanned (so the check below means something) ...
    assert {"hydra_plugins.agr_run_list", "hydra_plugins.agr_slurm"} <= modules
    # ... and imported nothing heavy
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    _, without = _run_app(tmp_path, hide=True)
    assert not any(m.startswith(("hydra_plugins.agr_", "agr_suite")) for m in _modules(without))

    # start-up within 1.5x + 0.5 s of the same app with the suite's plugins hidden (medians
    # of 3, alternating, so that a busy machine slows both alike)
    with_suite, hidden = [], []
    for _ in range(3):
        with_suite.append(_run_app(tmp_path)[0])
        hidden.append(_run_app(tmp_path, hide=True)[0])
    assert statistics.median(with_suite) <= 1.5 * statistics.median(hidden) + 0.5, (
        with_suite,
        hidden,
    )


def _fresh_venv_with_this_environments_packages(folder: Path) -> Path:
    """A new venv (no pip of its own) whose path holds this environment's site-packages as a
    plain folder: every distribution is importable there, but the suite's editable install,
    which a .pth hook of that folder makes, is not: the state before `pip install` of the
    suite."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    Path(purelib, "this-environment.pth").write_text(f"{ours}\n")
    return python


def _run_app_with(python: Path, folder: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HIDE_SUITE_PLUGINS")}
    start = time.perf_counter()
    result = subprocess.run(
        [python, "app.py", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return time.perf_counter() - start, result.stdout


@pytest.mark.slow  # make test-slow: a venv, a pip install and Hydra apps in subprocesses
def test_pip_installing_the_suite_into_a_fresh_venv_leaves_another_app_unchanged(tmp_path):
    """What a user does: `pip install` the suite into an environment that has another Hydra
    app. Before and after, that app's --help is the same text, its start-up imports nothing
    heavy, and its start-up time stays within 1.5x + 0.5 s (medians of 3)."""
    app = tmp_path / "app"
    app.mkdir()
    _write_app(app)
    python = _fresh_venv_with_this_environments_packages(tmp_path / "venv")

    _, help_before = _run_app_with(python, app, "--help")
    before = [_run_app_with(python, app)[0] for _ in range(3)]
    _, plain = _run_app_with(python, app)
    assert not any(m.startswith(("hydra_plugins.agr_", "agr_suite")) for m in _modules(plain))

    install = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-e",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr

    _, help_after = _run_app_with(python, app, "--help")
    assert help_after == help_before
    _, plain = _run_app_with(python, app)
    modules = _modules(plain)
    assert {"hydra_plugins.agr_run_list", "hydra_plugins.agr_slurm"} <= modules  # installed
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    after = [_run_app_with(python, app)[0] for _ in range(3)]
    assert statistics.median(after) <= 1.5 * statistics.median(before) + 0.5, (after, before)
