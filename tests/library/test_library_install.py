"""The AGR library (lib/, distribution torch-agr, import name agr) installs and works alone:
its metadata requires torch and nothing else outside extras, and ``import agr`` with torch
and torch's own dependencies importable (and none of the suite's) attaches AGR to AdamW and
steps, loading none of timm, torchvision, wandb, hydra, transformers or diffusers.

Two ways, both in ``make test-all`` (marker slow: subprocesses, about 3 s and 7 s): the wheel
that ``pip wheel ./lib`` builds with this environment's setuptools (its contents and
metadata, then unpacked into a folder and run in an interpreter without site-packages,
``python -S``), and what a user does: a fresh venv, ``pip install --no-deps ./lib`` (build
isolation fetches setuptools from the package index), torch made importable through a .pth
file. In both, torch comes from a folder of symlinks to torch and the distributions torch
requires (found through importlib.metadata), never from the suite's site-packages.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "lib"
DISTRIBUTION = "torch-agr"
SUITE_MODULES = ("timm", "torchvision", "wandb", "hydra", "transformers", "diffusers")

# Run in the library's environment: attach AGR to AdamW, one step, what got imported.
PROBE = r"""
import json, os, sys, time
sys.path[:0] = [p for p in sys.argv[1:] if p]
started = time.perf_counter()
import torch
torch_s = time.perf_counter() - started
started = time.perf_counter()
import agr
agr_s = time.perf_counter() - started

torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
handle = agr.attach(optimizer)
model(torch.randn(8, 4)).square().mean().backward()
raw = [p.grad.clone() for p in model.parameters()]
before = [p.detach().clone() for p in model.parameters()]
optimizer.step()
expected = [g - g.abs() / g.abs().sum() * g for g in raw]
try:
    agr.build_optimizer("adan_agr", model)
    adan_error = None
except ImportError as error:
    adan_error = str(error)
kernel = os.path.join(os.path.dirname(agr.regularizer.__file__), "csrc", "agr_cpu.cpp")
print(json.dumps({
    "agr_file": agr.__file__,
    "torch_file": torch.__file__,
    "torch_s": torch_s,
    "agr_s": agr_s,
    "handle": agr.handle_of(optimizer) is handle,
    "steps": handle.steps,
    "agr_grads": all(torch.allclose(p.grad, e) for p, e in zip(model.parameters(), expected)),
    "moved": all(not torch.equal(p, b) for p, b in zip(model.parameters(), before)),
    "suite_loaded": sorted(m for m in SUITE_MODULES if m in sys.modules),
    "adan_error": adan_error,
    "kernel_source": os.path.isfile(kernel),
}))
""".replace("SUITE_MODULES", repr(SUITE_MODULES))


def _requirements_of(dist: metadata.Distribution) -> list[Requirement]:
    """The distribution's requirements that apply here, extras left out."""
    wanted = []
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            wanted.append(requirement)
    return wanted


def torch_closure() -> list[metadata.Distribution]:
    """torch and every distribution it requires, recursively (no extras), as installed."""
    found: dict[str, metadata.Distribution] = {}
    pending = ["torch"]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        found[name] = metadata.distribution(name)
        pending += [r.name for r in _requirements_of(found[name])]
    return list(found.values())


def link_torch(folder: Path) -> Path:
    """A folder of symlinks to the top-level packages and metadata of torch and the
    distributions torch requires: torch importable without anything else installed."""
    folder.mkdir(parents=True, exist_ok=True)
    dists = torch_closure()
    names = {canonicalize_name(d.metadata["Name"]) for d in dists}
    assert not names & {canonicalize_name(m) for m in SUITE_MODULES}, names
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops):
            if top == "__pycache__" or top.endswith(".pth"):
                continue
            source = Path(dist.locate_file(top))
            target = folder / source.name
            if source.exists() and not target.exists():
                target.symlink_to(source)
    return folder


def lib_copy(tmp_path: Path) -> Path:
    """lib/ copied out of the checkout: pip builds in the source tree (build/, *.egg-info)."""
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    return Path(shutil.copytree(LIB, tmp_path / "lib", ignore=ignore))


def probe(python: str, paths: list[Path], cwd: Path, *, isolated: bool) -> dict:
    """Runs PROBE with ``python`` (``-S -E`` when isolated: no site-packages, no PYTHON*
    variables) with ``paths`` first on sys.path, in ``cwd`` (not this checkout, whose
    folders must not be importable); the CPU kernel is not built."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["AGR_CPU_KERNEL"] = "0"
    flags = ["-S", "-E"] if isolated else []
    result = subprocess.run(
        [python, *flags, "-c", PROBE, *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_probe(report: dict, installed: Path) -> None:
    assert Path(report["agr_file"]).resolve().is_relative_to(installed.resolve()), report
    assert not Path(report["agr_file"]).resolve().is_relative_to(LIB.resolve()), report
    assert report["handle"] and report["steps"] == 1, report
    assert report["agr_grads"] and report["moved"], report
    assert report["suite_loaded"] == [], report
    assert report["kernel_source"], "agr/csrc/agr_cpu.cpp is not shipped with the package"
    # timm absent: Adan says what to install
    assert report["adan_error"] and "pip install timm" in report["adan_error"], report
    print(
        f"\nimport torch {report['torch_s']:.2f} s; import agr on top of it "
        f"{report['agr_s']:.3f} s (torch from {Path(report['torch_file']).parent})"
    )


def check_requires(requires: list[str]) -> None:
    """Requires-Dist: torch (>=2.14, the tested series) and nothing else outside the extras
    (adan: timm, kernel: ninja)."""
    plain, extras = [], {}
    for requirement in map(Requirement, requires):
        marker = str(requirement.marker or "")
        if "extra" in marker:
            extra = marker.split("==")[1].strip().strip("'\"")
            extras.setdefault(extra, set()).add(requirement.name)
        else:
            plain.append((requirement.name, str(requirement.specifier), marker))
    assert plain == [("torch", ">=2.14", "")], requires
    assert extras == {"adan": {"timm"}, "kernel": {"ninja"}}, requires


@pytest.mark.slow
def test_the_library_wheel_needs_torch_alone_and_imports_without_the_suite(tmp_path):
    """The wheel pip builds from lib/ (this environment's setuptools, no
    download), its metadata, then the unpacked wheel in ``python -S`` with torch linked."""
    pytest.importorskip("setuptools", minversion="77")
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--disable-pip-version-check", "-q", "-w", str(wheels), str(lib_copy(tmp_path))],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name.startswith("torch_agr-0.1.0-py3-none-any"), wheel.name
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = archive.read(meta).decode()
        archive.extractall(site)
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"agr"}, names  # the library alone: no agr_suite, hydra_plugins, tests
    assert "agr/csrc/agr_cpu.cpp" in names
    requires = [
        line.split(":", 1)[1].strip()
        for line in message.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    check_requires(requires)
    assert f"Name: {DISTRIBUTION}" in message
    paths = [site, link_torch(tmp_path / "torch")]
    check_probe(probe(sys.executable, paths, tmp_path, isolated=True), site)


@pytest.mark.slow
def test_pip_install_of_the_library_alone_in_a_fresh_venv(tmp_path):
    """What a user does: a fresh venv, ``pip install --no-deps ./lib`` (build isolation takes
    setuptools from the package index), then torch made importable by a .pth file."""
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q"]
        + [str(lib_copy(tmp_path))],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
    )
    # Before torch is importable: the installed metadata.
    show = f"import importlib.metadata as m, json; print(json.dumps(m.requires({DISTRIBUTION!r})))"
    requires = subprocess.run(
        [python, "-c", show],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    check_requires(json.loads(requires))
    (site / "torch-only.pth").write_text(f"{link_torch(tmp_path / 'torch')}\n")
    check_probe(probe(python, [], tmp_path, isolated=False), site)
