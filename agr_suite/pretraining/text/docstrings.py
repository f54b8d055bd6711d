"""The embedded ``docstrings`` corpus: the docstrings of CPython's standard library.

Every Python installation carries its standard library's source, and its docstrings are
English prose about code, like ``pydoc``'s help pages but several times as much. The files are
parsed with :mod:`ast` (nothing is imported or run). A document is one module: its docstrings
(the module's, then its classes' and functions', in source order), each paragraph split into
sentences as in ``pydoc``, an indented block or a doctest (``>>>``) kept as one "sentence".
Test packages (``test``, ``tests``, ``idle_test``), installed packages (``site-packages``) and
``pydoc_data`` (the ``pydoc`` corpus's own text) are left out; a module whose docstrings repeat
an earlier module's word for word (``_pyio`` and ``io`` ...) is kept once.

The split is fixed: of the modules in path order, every ``DOCSTRINGS_TEST_EVERY``-th is a test
module, whatever the run's seed. The text is that of the running Python's library, so it
differs between Python versions (``Corpus.digest`` tells them apart).
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from agr_suite.pretraining.text.corpus import (
    Corpus,
    fixed_split,
    paragraphs,
    python_version,
    split_sentences,
)

__all__ = ["DOCSTRINGS_TEST_EVERY", "docstrings_corpus", "module_docstrings"]

DOCSTRINGS_TEST_EVERY = 10
_LEFT_OUT = {"test", "tests", "idle_test", "site-packages", "dist-packages", "pydoc_data"}
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def module_docstrings(source: str | bytes) -> list[str]:
    """The sentences of one module's docstrings, in source order. Raises SyntaxError for a
    file that is not Python 3 (the library ships a few, as test data)."""
    tree = ast.parse(source)
    nodes = [node for node in ast.walk(tree) if isinstance(node, _DOCUMENTED)]
    nodes.sort(key=lambda node: getattr(node, "lineno", 0))
    sentences: list[str] = []
    for node in nodes:
        text = ast.get_docstring(node, clean=True)
        if not text:
            continue
        for block in paragraphs(text.splitlines()):
            if block[0].startswith((" ", ">>>")):
                sentences.append(" ".join(" ".join(block).split()))
            else:
                sentences.extend(split_sentences(" ".join(block)))
    return sentences


def _modules(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*.py")
        if not _LEFT_OUT.intersection(path.relative_to(root).parts[:-1])
    )


def docstrings_corpus(root: str | Path | None = None) -> Corpus:
    """The corpus of the library under ``root`` (default: the running Python's) with its fixed
    split; modules with fewer than two sentences are left out (they make no sentence pair)."""
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    return Corpus(
        name="docstrings",
        splits=fixed_split(_documents(root), DOCSTRINGS_TEST_EVERY),
        source=f"docstrings of the standard library of Python {python_version()} ({root})",
    )


def _documents(root: Path) -> Iterator[list[str]]:
    for path in _modules(root):
        try:
            sentences = module_docstrings(path.read_bytes())
        except (SyntaxError, ValueError):  # Python 2 test data; a null byte
            continue
        if len(sentences) >= 2:
            yield sentences
