"""The test suite's own shape: a test module never imports another test module (what they
share lives in tests/helpers.py and the fixture and reference modules)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """The top-level name of every module ``path`` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:  # from . import x, from .x
            names.update(
                [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            )
        elif (  # importlib.import_module("test_x") / __import__("test_x")
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def test_no_test_module_imports_another_test_module():
    modules = sorted(TESTS.rglob("test_*.py"))
    assert len(modules) > 20  # the glob found the suite
    offenders = {
        path.name: sorted(name for name in imported_modules(path) if name.startswith("test_"))
        for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_every_kind_of_import(tmp_path):
    """The parser above against a file written with each way to import test_run."""
    source = tmp_path / "test_sample.py"
    source.write_text(
        "import os\n"
        "import test_a\n"
        "import test_b.sub as b\n"
        "from test_c import x\n"
        "from . import test_d\n"
        "from .test_e import y\n"
        "def f():\n"
        "    from test_f import z\n"
        "    importlib.import_module('test_g')\n"
        "    __import__('test_h')\n"
        "from helpers import run_cli\n"
    )
    found = {name for name in imported_modules(source) if name.startswith("test_")}
    assert found == {f"test_{c}" for c in "abcdefgh"}
