"""`python run.py --help`: the config groups a user chooses from, each with its choices as the
configs/ folder holds them, and nothing internal (the schema's ConfigStore entries, the
fragments that other presets include)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_in_process

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
USER_GROUPS = (
    "dataset",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "launcher",
    "experiment",
)


def choices_on_disk() -> dict[str, set[str]]:
    """group -> the choices configs/ offers, read from the folder (a subfolder's choices as
    ``sub/name``), leaving out what starts with ``_`` (fragments) and ``local`` (site
    settings that launcher=slurm loads)."""
    groups = {}
    for folder in sorted(p for p in CONFIGS.iterdir() if p.is_dir()):
        if folder.name.startswith("_") or folder.name == "local":
            continue
        names = {
            path.relative_to(folder).with_suffix("").as_posix()
            for path in folder.rglob("*.yaml")
            if not any(part.startswith("_") for part in path.relative_to(folder).parts)
        }
        groups[folder.name] = names
    return groups


def listed_groups(help_text: str) -> dict[str, set[str]]:
    """group -> choices, as the help's groups section lists them (``group: a, b,`` then
    indented continuation lines)."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("== Config groups"))
    groups: dict[str, set[str]] = {}
    current = None
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(("(", "==")):
            break
        if not line[0].isspace():
            current, _, line = line.partition(": ")
            groups[current] = set()
        groups[current] |= {c.strip() for c in line.split(",") if c.strip()}
    return groups


def check_help(help_text: str) -> None:
    listed = listed_groups(help_text)
    assert set(USER_GROUPS) <= set(listed)
    assert listed == choices_on_disk()
    assert "experiment/" not in help_text  # no subfolder listed as a group of its own
    assert "table2/mini/digits_vit" in listed["experiment"]
    assert not any("common" in choice for choice in listed["experiment"])
    assert "schema" not in help_text
    # the composed default config follows, typed (a schema default that no YAML restates)
    assert "optimizer:\n  name: adamw_agr\n" in help_text
    assert "\n  grad_clip: null\n" in help_text


def test_help_lists_the_groups_a_user_chooses_from(tmp_path):
    result = run_in_process(["--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_help(result.stdout)


@pytest.mark.slow  # make test-slow: a `python run.py --help` process
def test_help_process_lists_the_groups(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    check_help(result.stdout)


@pytest.mark.slow  # make test-slow: a `python run.py --help` process
def test_help_imports_no_torch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "run.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "agr_suite.core.config" in imported  # the suite's registration was imported
    assert not {"torch", "timm", "agr"} & imported
