"""The dependency declarations tell the truth.

- What the suite's code imports (every ``import`` statement, lazy ones included, found by
  parsing the source) is exactly what pyproject.toml declares, and the same for the library.
  The owner of an imported module is found from the installed files (importlib.metadata),
  not from a table of names.
- requirements.lock pins every distribution with hashes, satisfies every declared range,
  and is what this environment has installed, so the tests ran on it.
- Each declared floor is the release series the lock pins: no floor claims an older version
  than the tests ran on.
- requires-python admits the interpreter the lock is resolved for, which is the one running.
- (slow, needs the package index) ``make lock``'s resolver run on the ranges gives the
  committed lock again.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
SUITE_CODE = ["agr_suite", "hydra_plugins", "scripts", "run.py"]
LIBRARY_CODE = ["lib/agr"]
LOCAL = {"agr-suite", "torch-agr"}


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def _imported_modules(paths: list[str]) -> set[str]:
    """Every absolute module name imported anywhere under ``paths``."""
    modules = set()
    for entry in paths:
        root = ROOT / entry
        for file in [root] if root.is_file() else sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(), str(file))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module)
    return modules


@cache
def _top_level_owners() -> dict[str, list[str]]:
    """Top-level import name -> the installed distributions that provide it (their RECORD
    files, as importlib.metadata reads them)."""
    return metadata.packages_distributions()


def _distribution_of(module: str) -> str | None:
    """The distribution that installs ``module``; None for the standard library and for this
    checkout's own code (the suite, the library, a script importing another). For a
    namespace package shared by several distributions (hydra_plugins), the one whose files
    hold the module's second level."""
    parts = module.split(".")
    top = parts[0]
    if top in sys.stdlib_module_names or (ROOT / "scripts" / f"{top}.py").is_file():
        return None
    owners = {canonicalize_name(d) for d in _top_level_owners().get(top, [])}
    assert owners, f"{module} is imported but no installed distribution provides it"
    if len(owners) == 1:
        (owner,) = owners
        return None if owner in LOCAL else owner
    prefix = "/".join(parts[:2]) + "/"
    holders = {
        name
        for name in owners - LOCAL
        if any(str(f).startswith(prefix) for f in metadata.distribution(name).files or [])
    }
    assert len(holders) <= 1, f"{module}: provided by {sorted(holders)}"
    if holders:
        return holders.pop()
    assert (ROOT / prefix).is_dir(), f"{module}: no installed distribution holds it"
    return None


def _declared(requirements: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(text) for text in requirements)
    return {canonicalize_name(r.name): r for r in parsed}


def _locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its sha256 hashes), read from requirements.lock."""
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())  # join continuation lines
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"requirements.lock: an option or editable: {line}"
        spec, *hashes = line.split(" --hash=")
        requirement = Requirement(spec)
        (pin,) = requirement.specifier
        assert pin.operator == "==", f"requirements.lock: {spec} is not an exact pin"
        pins[canonicalize_name(requirement.name)] = (Version(pin.version), hashes)
    return pins


def test_the_suite_declares_exactly_what_it_imports():
    suite = _project(ROOT / "pyproject.toml")
    imported = {_distribution_of(m) for m in _imported_modules(SUITE_CODE)} - {None}
    declared = set(_declared(suite["dependencies"]))
    assert "torch-agr" in declared and "agr" not in declared  # never the unrelated PyPI "agr"
    declared -= {"torch-agr"}
    assert imported - declared == set(), "imported but not declared in pyproject.toml"
    assert declared - imported == set(), "declared in pyproject.toml but never imported"


def test_the_library_declares_exactly_what_it_imports():
    library = _project(ROOT / "lib" / "pyproject.toml")
    imported = {_distribution_of(m) for m in _imported_modules(LIBRARY_CODE)} - {None}
    extras = library["optional-dependencies"]
    assert set(_declared(library["dependencies"])) == {"torch"} == imported - {"timm"}
    assert set(_declared(extras["adan"])) == {"timm"} and "timm" in imported
    # ninja is not imported: torch.utils.cpp_extension runs it to build the CPU kernel
    assert set(_declared(extras["kernel"])) == {"ninja"}


def test_the_lock_pins_every_distribution_with_hashes_and_leaves_out_the_local_ones():
    pins = _locked()
    assert len(pins) > 50
    unhashed = sorted(name for name, (_, hashes) in pins.items() if not hashes)
    assert not unhashed
    assert all(h.startswith("sha256:") for _, hashes in pins.values() for h in hashes)
    assert not LOCAL & set(pins)


def test_the_lock_satisfies_every_declared_range_and_each_floor_is_the_locked_series():
    """A floor such as ``transformers>=4.45`` beside a lock at 5.24 claims versions no test
    ran on; the floor's release numbers must match the lock's (as many as the floor gives,
    at most major.minor)."""
    pins = _locked()
    suite = _project(ROOT / "pyproject.toml")
    library = _project(ROOT / "lib" / "pyproject.toml")
    lists = [suite["dependencies"], library["dependencies"]]
    lists += list(suite["optional-dependencies"].values())
    lists += list(library["optional-dependencies"].values())
    for requirements in lists:
        for name, requirement in _declared(requirements).items():
            if name in LOCAL:
                continue
            assert name in pins, f"{name} is declared but not in requirements.lock"
            version = pins[name][0]
            assert version in requirement.specifier, f"lock {name}=={version} vs {requirement}"
            floors = [s for s in requirement.specifier if s.operator == ">="]
            assert len(floors) == 1, f"{requirement}: one floor expected"
            floor = Version(floors[0].version).release
            width = min(len(floor), 2)
            assert floor[:width] == version.release[:width], (
                f"{requirement}: the floor is older than the tested {name}=={version}"
            )


def test_this_environment_is_the_lock():
    """The tests run on the pinned versions (`make install` installs the lock)."""
    different = {}
    for name, (version, _) in _locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            different[name] = (str(version), installed and str(installed))
    assert not different, f"installed versions differ from requirements.lock: {different}"


def _lock_command() -> list[str]:
    """`make lock`'s resolver command, as the Makefile writes it."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (command,) = re.findall(r"^LOCK = (.+)$", makefile, flags=re.MULTILINE)
    words = shlex.split(command)
    assert words[0] == "$(VENV)/bin/uv"
    return [str(Path(sys.executable).parent / "uv"), *words[1:]]


def test_requires_python_is_the_tested_interpreter():
    command = _lock_command()
    tested = command[command.index("--python-version") + 1]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == tested
    for path in (ROOT / "pyproject.toml", ROOT / "lib" / "pyproject.toml"):
        requires = SpecifierSet(_project(path)["requires-python"])
        assert Version(tested) in requires
        # the lower bound is the tested version: no older Python is claimed
        assert {str(s) for s in requires if s.operator.startswith(">")} == {f">={tested}"}
    assert "--generate-hashes" in command and "--prerelease" in command
    # a pre-release only for a package with no final release (wandb pins such packages)
    assert command[command.index("--prerelease") + 1] == "if-necessary"


@pytest.mark.slow
def test_the_lock_regenerates_from_the_ranges(tmp_path):
    """The resolver, run the way `make lock` runs it (reading the committed lock as its
    preferences), writes the committed lock back: pins and hashes unchanged. Reaches the
    package index."""
    if not shutil.which(_lock_command()[0]):
        pytest.fail("uv is missing from the environment: run make install")
    out = tmp_path / "requirements.lock"
    shutil.copy(LOCK, out)
    result = subprocess.run(
        [*_lock_command(), "-o", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == LOCK.read_text()
