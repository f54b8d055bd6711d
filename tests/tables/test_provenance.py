"""Every value of the paper tables says where it comes from.

A reader trusts a cell because of its settings' source labels (docs/provenance.md):
``[paper]`` (the paper), ``[code]`` or ``[code: <file>]`` (the authors' code), ``[readme]``
(their README) and ``[choice: <reason>]`` or ``[choice] <reason>`` (ours, with a reason).

1. Every value a paper-scale preset of the tables sets (``configs/experiment/table*/*.yaml`` and
   ``configs/experiment/ablation_agr/*.yaml``, not ``mini/``), ``defaults:`` entries included,
   carries a label. A value's label is the tag in the comment on its own line; else the tag in
   the contiguous block of comment lines directly above it; else its parent key's label (so a
   label on ``trainer:`` covers its children). ``experiment_name`` is exempt: it names the run
   folder and changes no computation.
2. Every ``[choice]`` tag in those files gives its reason: inside the tag (``[choice: why]``) or
   after it in the same sentence of its comment (``[choice] why``).
3. Every schema field (``agr_suite/core/config.py``) whose default a paper-scale cell relies on
   (its composed value is the default) carries a ``source=`` label under the same rules,
   unless it is an engine knob that changes what runs where or how fast, not what is computed
   (``ENGINE``; the run's seed is chosen by the specs). The cells are each paper-scale preset
   of a table with each optimizer its columns choose.

The YAML is read line by line (these files are flat mappings and lists): PyYAML drops
comments and ruamel.yaml is not a dependency.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agr_suite.core.config import compose  # noqa: E402

PRESETS = ROOT / "configs" / "experiment"
TABLES = ("table1", "table2", "table3", "ablation_agr", "neighbours")
EXEMPT = {"experiment_name", "folder_hash"}  # name the run folder only

# Schema fields that choose where and how fast a run goes, or how it is logged, but not what
# it computes: their defaults need no source.
ENGINE = {
    "task", "experiment_name", "seed", "overwrite", "folder_hash", "model.task",
    "trainer.eval_batch_size", "trainer.log_every", "trainer.compile",
    "trainer.channels_last", "trainer.devices", "trainer.cpu_threads", "trainer.num_workers",
    "trainer.limit_batches", "trainer.divergence_factor", "trainer.deterministic",
    "optimizer.impl",
    "dataset.download", "dataset.loader",
    "metrics.inception_weights", "metrics.batch_size", "metrics.compile", "metrics.grid_size",
}  # fmt: skip
ENGINE_GROUPS = ("logger.", "paths.")

# A label: [paper], [readme], [code], [choice], optionally with ": text" or ", text" inside.
TAG = re.compile(r"\[(paper|readme|code|choice)([:,][^\]]*)?\]")
WORD = re.compile(r"[A-Za-z0-9]")
SENTENCE_END = re.compile(r"\.(\s|$)")  # a reason after "[choice]" ends with its sentence


# ------------------------------------------------------------------------------ labels
def tags(comment: str) -> list[str]:
    """The label tags in a comment, e.g. ['[code: main_ddpm.py]', '[choice] ...']."""
    return [m.group(0) for m in TAG.finditer(comment)]


def tag_problems(comment: str) -> list[str]:
    """Each [choice] tag of a comment without a reason: inside the tag (``[choice: why]``) or
    after it in the same sentence (``[choice] why``)."""
    problems = []
    for match in TAG.finditer(comment):
        if match.group(1) != "choice":
            continue
        inside = (match.group(2) or "").lstrip(":, ")
        after = comment[match.end() :]
        after = after[: m.start()] if (m := TAG.search(after)) else after
        after = after[: m.start()] if (m := SENTENCE_END.search(after)) else after
        if not WORD.search(inside) and not WORD.search(after):
            problems.append(f"{match.group(0)} without a reason")
    return problems


@dataclass
class Entry:
    """One line of a preset that sets a value or opens a mapping or a list."""

    key: str  # dotted path; list entries as key[i]
    line: int
    indent: int
    own: str  # the comment on the line itself
    above: str  # the contiguous comment lines directly above
    is_value: bool  # false for `key:` with nothing after it (a mapping or a block list)
    parent: Entry | None = None
    items: int = 0  # list entries seen (for `key:` opening a block list)
    text: str = ""

    def label(self) -> str | None:
        """The comment that labels this entry, by the module's rule; None: unlabelled."""
        for comment in (self.own, self.above):
            if tags(comment):
                return comment
        return self.parent.label() if self.parent is not None else None


@dataclass
class Preset:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    comments: list[tuple[int, str]] = field(default_factory=list)  # (line, comment)


def split_comment(line: str) -> tuple[str, str]:
    """(content, comment) of a YAML line with no quoted '#' (true of these configs)."""
    match = re.search(r"(^|\s)#(.*)$", line)
    if match is None:
        return line.rstrip(), ""
    return line[: match.start()].rstrip(), match.group(2).strip()


def parse(text: str, path: Path = Path("<text>")) -> Preset:
    """The entries of a flat Hydra preset with their comments."""
    preset = Preset(path)
    stack: list[Entry] = []  # open parents, innermost last
    block: list[str] = []
    block_start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            if block:
                preset.comments.append((block_start, " ".join(block)))
            block = []
            continue
        if stripped.startswith("#"):
            if not block:
                block_start = number
            block.append(stripped.lstrip("#").strip())
            continue
        content, own = split_comment(raw)
        if own:
            preset.comments.append((number, own))
        if block:
            preset.comments.append((block_start, " ".join(block)))
        above = " ".join(block)
        block = []
        indent = len(content) - len(content.lstrip())
        body = content.strip()
        if body.startswith("- "):
            # a block list entry: its parent is the open key it is listed under
            while stack and (stack[-1].indent > indent or stack[-1].is_value):
                stack.pop()
            assert stack and not stack[-1].is_value, f"{path}:{number}: a list entry outside a list"
            parent = stack[-1]
            entry = Entry(
                f"{parent.key}[{parent.items}]", number, indent, own, above, True, parent,
                text=body[2:].strip(),
            )  # fmt: skip
            parent.items += 1
            preset.entries.append(entry)
            continue
        key, sep, value = body.partition(":")
        assert sep, f"{path}:{number}: not a `key: value` line: {raw!r}"
        while stack and stack[-1].indent >= indent:
            stack.pop()
        parent = stack[-1] if stack else None
        dotted = f"{parent.key}.{key.strip()}" if parent else key.strip()
        value = value.strip()
        entry = Entry(dotted, number, indent, own, above, bool(value), parent, text=value)
        if value.startswith("[") and not value.endswith("]"):
            raise AssertionError(f"{path}:{number}: a flow list over several lines")
        preset.entries.append(entry)
        stack.append(entry)
    if block:
        preset.comments.append((block_start, " ".join(block)))
    return preset


def preset_problems(preset: Preset) -> list[str]:
    """'<file>:<line> <key>: <problem>' for every unlabelled value and every [choice] tag
    without a reason."""
    where = preset.path.relative_to(ROOT) if preset.path.is_absolute() else preset.path
    problems = []
    for entry in preset.entries:
        if not entry.is_value or entry.key in EXEMPT:
            continue
        if entry.label() is None:
            shown = f"{entry.key} = {entry.text}"
            problems.append(f"{where}:{entry.line} {shown}: no [paper|code|readme|choice] label")
    for line, comment in preset.comments:
        problems += [f"{where}:{line}: {p}" for p in tag_problems(comment)]
    return problems


def paper_presets() -> list[Path]:
    return sorted(p for table in TABLES for p in (PRESETS / table).glob("*.yaml"))


def spec_presets() -> dict[str, set[str]]:
    """table -> the presets its paper scale names, and the optimizers its columns choose."""
    named: dict[str, set[str]] = {}
    for table in TABLES:
        raw = yaml.safe_load((ROOT / "tables" / f"{table}.yaml").read_text())
        scaled = raw["scales"]["paper"]
        for row in scaled["rows"]:
            for override in [*scaled.get("overrides", []), *row.get("overrides", [])]:
                if override.startswith("experiment="):
                    named.setdefault(table, set()).add(override.split("=", 1)[1])
    return named


def column_optimizers(table: str) -> list[str]:
    raw = yaml.safe_load((ROOT / "tables" / f"{table}.yaml").read_text())
    chosen = []
    for column in raw["columns"]:
        for override in column["overrides"]:
            if override.startswith("optimizer=") and override not in chosen:
                chosen.append(override)
    return chosen


# ------------------------------------------------------------------------------ tests
def test_every_value_of_a_paper_preset_is_labelled():
    presets = paper_presets()
    named = {name for names in spec_presets().values() for name in names}
    found = {p.relative_to(PRESETS).with_suffix("").as_posix() for p in presets}
    assert named <= found, f"presets of the specs outside the checked folders: {named - found}"
    problems = []
    for path in presets:
        problems += preset_problems(parse(path.read_text(), path))
    assert not problems, (
        "values without a source label (docs/provenance.md says which is which):\n  "
        + "\n  ".join(problems)
    )


def test_the_checker_finds_an_unlabelled_value_and_a_choice_without_reason():
    text = """# @package _global_
# Header, whose tag [code: a.py] labels the first key only.
defaults:
  - override /model: vit
  - override /optimizer: adan  # [paper]
experiment_name: x
optimizer:
  # [choice] the comment block above a key labels it
  lr: 1.0e-3
  weight_decay: 0.0
trainer:  # [readme]
  epochs: 3
scheduler:
  warmup_epochs: 2  # [choice]
  gamma: 0.2  # [MASK] is no label
"""
    problems = preset_problems(parse(text))
    assert problems == [
        "<text>:10 optimizer.weight_decay = 0.0: no [paper|code|readme|choice] label",
        "<text>:15 scheduler.gamma = 0.2: no [paper|code|readme|choice] label",
        "<text>:14: [choice] without a reason",
    ], problems
    entries = {e.key: e for e in parse(text).entries}
    # the header labels `defaults:`, whose entries inherit it; a parent's label covers children
    assert entries["defaults[0]"].label() == entries["defaults"].above
    assert entries["trainer.epochs"].label() == "[readme]"
    assert tag_problems("[choice: the grid {0, 0.1}] and [choice] because") == []
    assert tag_problems("ours [choice].") == ["[choice] without a reason"]


def _defaults(cls) -> dict:
    """dotted field -> (default, source) of a schema dataclass and its nested ones."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        if dataclasses.is_dataclass(default):
            out.update({f"{f.name}.{k}": v for k, v in _defaults(type(default)).items()})
        else:
            out[f.name] = (default, f.metadata.get("source"))
    return out


def _relied_on(cfg) -> list[tuple[str, object, str | None]]:
    """(dotted key, value, source) of every schema field of a typed run config whose value is
    its schema default."""
    found = []
    for f in dataclasses.fields(cfg):
        node = getattr(cfg, f.name)
        if dataclasses.is_dataclass(node):
            defaults = _defaults(type(node))
            for key, (default, source) in defaults.items():
                value = node
                for part in key.split("."):
                    value = getattr(value, part)
                if value == default:
                    found.append((f"{f.name}.{key}", value, source))
        elif f.metadata and getattr(cfg, f.name) == f.default:
            found.append((f.name, node, f.metadata.get("source")))
    return found


def schema_problems(cells: list[tuple[str, list[str]]]) -> list[str]:
    problems: dict[str, str] = {}
    for preset, arm in cells:
        cfg = compose([f"experiment={preset}", *arm])
        for key, value, source in _relied_on(cfg):
            if key in ENGINE or key.startswith(ENGINE_GROUPS) or key in problems:
                continue
            where = f"{key} (default {value!r}, relied on by {preset} {' '.join(arm)})"
            if not source or not tags(source):
                problems[key] = f"{where}: source {source!r} is no label"
            elif bad := tag_problems(source):
                problems[key] = f"{where}: {', '.join(bad)}"
    return sorted(problems.values())


@pytest.mark.parametrize("table", TABLES)
def test_the_schema_defaults_a_paper_cell_relies_on_are_labelled(table):
    cells = [
        (preset, [optimizer])
        for preset in sorted(spec_presets()[table])
        for optimizer in column_optimizers(table)
    ]
    problems = schema_problems(cells)
    assert not problems, (
        "schema defaults without a source label (agr_suite/core/config.py, `source=`):\n  "
        + "\n  ".join(problems)
    )
