"""The CPU AGR kernel is built once per Python environment, inside it, and never rebuilt
because another environment built its own (torch's cache is keyed by the name alone)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from agr import regularizer

LIB = Path(__file__).resolve().parents[2] / "lib"


def test_the_build_folder_is_in_this_environment_and_names_its_versions(monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    folder = Path(regularizer.kernel_build_directory())
    assert folder.is_relative_to(sys.prefix)
    assert f"torch{torch.__version__}" in folder.name
    assert folder.name.endswith(f"-py{sys.version_info.major}.{sys.version_info.minor}")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/somewhere")
    assert regularizer.kernel_build_directory() is None  # the user's choice: torch's cache


LOAD = """
import json, os, time
import agr.regularizer as r
started = time.perf_counter()
ok = r.load_cpu_kernel()
folder = r.kernel_build_directory()
built = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".so")]
print(json.dumps({"ok": ok, "folder": folder, "so": built,
                  "mtime": [os.stat(f).st_mtime_ns for f in built],
                  "seconds": time.perf_counter() - started}))
"""


def _environment(path: Path) -> Path:
    """A venv of its own (its own sys.prefix) that imports this one's packages and lib/."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    (Path(site) / "agr_test_deps.pth").write_text(f"{LIB}\n{here}\n")
    return python


def _load(python: Path) -> dict:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(python.parents[2])}
    out = subprocess.run([python, "-c", LOAD], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_environments_built_in_turn_load_the_kernel_without_a_rebuild(tmp_path):
    first, second = _environment(tmp_path / "a"), _environment(tmp_path / "b")
    a = _load(first)  # builds (about a minute)
    b = _load(second)  # builds its own
    again = _load(first)  # loads the one it built: no rebuild
    assert a["ok"] and b["ok"] and again["ok"]
    assert Path(a["folder"]).is_relative_to(tmp_path / "a")
    assert Path(b["folder"]).is_relative_to(tmp_path / "b")
    assert again["so"] == a["so"] and again["mtime"] == a["mtime"]
    assert again["seconds"] < a["seconds"] / 3, (a["seconds"], again["seconds"])
