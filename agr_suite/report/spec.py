"""Table specs (`tables/<table>.yaml`): which runs make which cell of a table.

A table is rows x columns. Columns are the compared arms (the optimizer, with or without
AGR; one is the baseline, and every other column gets a paired difference against it); rows
are the settings (data set and model, weight decay, or an evaluation epoch). A setting is a
Hydra preset under configs/experiment/ (`# @package _global_`) that the row, or the scale
for all its rows, chooses with `experiment=<preset>`; a column adds its arm (`optimizer=...`).
A cell's runs are the Hydra overrides of its scale, row and column, then the row's own
``column_overrides`` for that column (later ones win per key), plus ``seed=N`` for each seed,
so one cell is `python run.py experiment=<preset> <arm> seed=N`. Cells with the same overrides
share their runs (Table 1's rows are epochs of the same runs).

The format, with every key (see tables/table2.yaml for a full example; any other key is
refused)::

    title: Table 2 ...
    seeds: [0, 1, 2]
    metrics:                 # one table section per metric
      - key: top1            # the name in results.json / history.jsonl
        label: Top-1 accuracy (%)
        select: final        # final | best (results.json "metrics" | "best"); rows with an
                             # `epoch` read history.jsonl at that epoch instead
        higher_is_better: true
        decimals: 2          # printed decimals; a nonzero value that would round to 0 gets
                             # 2 significant digits instead (agr_suite.report.numbers.format_number)
        chance: null         # optional: the metric's chance level (e.g. 50.0 for a balanced
                             # binary task); the table then reports each cell against it
        chance_basis: null   # optional: why that is chance (e.g. "balanced labels")
        margin: 0.5          # optional: the equivalence margin of a paired difference, in
                             # the metric's units (TOST; see agr_suite/report/verdicts.py), fixed
                             # before the runs
        margin_reason: ...   # why that margin (printed under the table)
        margin_history:      # optional: every earlier margin, kept when one is changed
          - {margin: 1.0, from: 2026-12-01, until: 2026-12-03, reason: ...}
        paired_sd: 0.4       # optional: the assumed sd of the paired differences, the power
        paired_sd_reason: .. #   plan's basis (with margin and its reason); the seeds that
                             #   detect `margin` with 80% power at the Holm planning level
                             #   of the metric's family follow from it (agr_suite.report.verdicts)
        collapse_key: null   # optional: the accuracy whose prediction statistics
                             # (<key>_pred_classes, _majority, _minority, _examples in the
                             # runs' metrics) tell whether the model ignores its input;
                             # default: the metric itself when the runs record them
        time_to_target:      # optional (accuracies): also report the first evaluated epoch
          target: 90.0       #   at which a run reaches `target` (rows may set their own in
          target_reason: ... #   `targets`), with its paired difference and verdict
          margin: 1.0        #   in epochs, with its reason
          margin_reason: ...
    primary:                 # the primary endpoint: its comparisons are one Holm family,
      metric: top1           #   every other comparison the secondary family
      rows: all              # all | last (e.g. Table 1: IS at the last evaluated epoch)
      reason: ...
    columns:
      - {name: AdamW, overrides: [optimizer=adamw]}
      - {name: AdamW(AGR), overrides: [optimizer=adamw_agr]}
    baseline: AdamW          # default pairs: every other column minus the baseline
    pairs: [[AdamW(AGR), AdamW]]   # optional: which paired differences to show
    paper_source: where the paper values come from (null: none published)
    notes: [...]             # printed under every scale's table; scales add their own
    scales:
      paper:
        title: ...           # optional: the table's title at this scale
        seeds: [0, 1, 2, 3, 4]   # optional: this scale's seeds (default: the spec's)
        overrides: [experiment=table1/ddpm_adan]  # optional: before every row's
        runs_subdir: ""      # under paths.runs; the mini scale uses "mini"
        results_subdir: ""   # under results/
        cost: {unit: GPU-hours (...), per_run: 1.0, per_launch: 0.0}
        metrics:             # optional: per-metric settings at this scale (label, margin,
          fid: {label: ...}  #   margin_reason, margin_history, paired_sd, paired_sd_reason,
                             #   time_to_target)
        columns: [AdamW, AdamW(AGR)]   # optional: run only these columns at this scale
        column_overrides: {AdamW(AGR): [...]}  # optional: added to a column at this scale
        notes: [...]
        rows:
          - name: CIFAR-100 / ResNet-18
            overrides: [experiment=table2/cifar100_resnet18]
            epoch: null      # read the metrics at this epoch of history.jsonl
            cost: 0.8        # per run, in the scale's unit (default cost.per_run)
            paper: {AdamW(AGR): {top1: <value>}}  # column -> metric; absent: not published
            targets: {top1: 70.0}  # optional: this row's time-to-target targets
            column_overrides: {AdamW lr/2: [optimizer.lr=5.0e-4]}  # optional: added to a
                             # column in this row only (e.g. a learning rate the row sets)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "tables"
CONFIGS = ROOT / "configs"
SELECTS = ("final", "best")
SCALES = ("paper", "mini")


class SpecError(ValueError):
    """A table spec that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class MarginChange:
    """An earlier margin of a metric, kept in the spec when the margin was changed."""

    margin: float
    since: str
    until: str
    reason: str


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    select: str = "final"
    higher_is_better: bool = True
    decimals: int = 2
    chance: float | None = None  # the metric's chance level, when it has one
    chance_basis: str | None = None  # why that is the chance level
    margin: float | None = None  # equivalence margin of a paired difference (metric units)
    margin_reason: str | None = None
    margin_history: tuple[MarginChange, ...] = ()
    paired_sd: float | None = None  # assumed sd of paired differences: the power plan's basis
    paired_sd_reason: str | None = None
    collapse_key: str | None = None  # the accuracy whose prediction statistics judge collapse
    source: str | None = None  # time to target: the accuracy it reads from history.jsonl
    target: float | None = None  # time to target: the default target of that accuracy
    target_reason: str | None = None

    @property
    def time_to_target(self) -> bool:
        """A derived metric: the first evaluated epoch at which ``source`` reaches a target."""
        return self.source is not None

    @property
    def prediction_key(self) -> str:
        """The accuracy whose ``<key>_pred_classes``/``_majority``/``_minority``/``_examples``
        the runs record for this metric (its own key unless the spec says otherwise)."""
        return self.collapse_key or self.source or self.key


TIME_TO_TARGET = "_epochs_to_target"
"""Suffix of a time-to-target metric's key: ``top1_epochs_to_target``."""


@dataclass(frozen=True)
class Primary:
    """The primary endpoint: one metric on all rows or on the last one."""

    metric: str
    rows: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Plan:
    """The seeds one metric's margin needs: 80% power for the paired t-test against the
    margin at the assumed paired sd, at the Holm planning level of the metric's family."""

    metric: Metric
    family: str  # "primary" or "secondary"
    family_size: int
    level: float
    seeds: int | None


@dataclass(frozen=True)
class Column:
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    name: str
    overrides: tuple[str, ...] = ()
    epoch: int | None = None
    cost: float | None = None
    paper: dict[str, dict[str, float | None]] = field(default_factory=dict, hash=False)
    targets: dict[str, float] = field(default_factory=dict, hash=False)
    # column -> overrides added to that column in this row only (after the column's own)
    column_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def paper_value(self, column: str, metric: str) -> float | None:
        return (self.paper.get(column) or {}).get(metric)

    def target(self, metric: Metric) -> float | None:
        """The target of a time-to-target metric in this row (the row's own, else the
        metric's)."""
        return self.targets.get(metric.source, metric.target) if metric.source else None


@dataclass(frozen=True)
class Cell:
    row: Row
    column: Column
    group: int  # index into TableSpec.groups: the runs this cell reads

    @property
    def name(self) -> str:
        return f"{self.row.name!r} x {self.column.name!r}"


@dataclass(frozen=True)
class RunGroup:
    """One distinct config of the table (without the seed): its runs are one per seed."""

    overrides: tuple[str, ...]
    cells: tuple[str, ...]  # names of the cells that read it, for messages
    cost: float


@dataclass(frozen=True)
class Cost:
    unit: str
    per_run: float
    per_launch: float = 0.0

    @property
    def in_gpu_hours(self) -> bool:
        """Whether runs are costed in hours of one GPU (paper scales), so that a wall time on
        N GPUs follows from them."""
        return self.unit.startswith("GPU-hours")


@dataclass
class TableSpec:
    name: str
    path: Path
    scale: str
    title: str
    seeds: tuple[int, ...]
    metrics: tuple[Metric, ...]
    columns: tuple[Column, ...]
    baseline: str
    pairs: tuple[tuple[str, str], ...]  # (column, baseline column) for paired differences
    rows: tuple[Row, ...]
    scale_overrides: tuple[str, ...]
    runs_subdir: str
    results_subdir: str
    cost: Cost
    paper_source: str | None
    notes: tuple[str, ...]
    primary: Primary
    cells: tuple[Cell, ...] = ()
    groups: tuple[RunGroup, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.path} (scale {self.scale})"

    def cost_of(self, seeds: int) -> tuple[int, float]:
        """(runs, cost in the scale's unit) of the whole table with ``seeds`` seeds."""
        return len(self.groups) * seeds, seeds * sum(g.cost for g in self.groups) + (
            self.cost.per_launch
        )

    def family(self, row: Row, metric: Metric) -> str:
        """The Holm family of a comparison: "primary" for the primary metric on the
        primary rows, "secondary" for everything else."""
        primary = metric.key == self.primary.metric and row.name in self.primary.rows
        return "primary" if primary else "secondary"

    def family_sizes(self) -> dict[str, int]:
        """Comparisons per family: every row x metric x pair."""
        sizes = {"primary": 0, "secondary": 0}
        for row in self.rows:
            for metric in self.metrics:
                sizes[self.family(row, metric)] += len(self.pairs)
        return sizes

    def plans(self) -> list[Plan]:
        """A plan for every metric with an assumed paired sd, at its family's level (the
        primary metric's plan is for the primary family)."""
        from agr_suite.report.verdicts import planning_level, seeds_needed

        sizes, out = self.family_sizes(), []
        for metric in self.metrics:
            if metric.paired_sd is None or metric.margin is None:
                continue
            family = "primary" if metric.key == self.primary.metric else "secondary"
            level = planning_level(sizes[family])
            needed = seeds_needed(metric.margin, metric.paired_sd, level)
            out.append(Plan(metric, family, sizes[family], level, needed))
        return out

    @property
    def planned_seeds(self) -> int | None:
        """The seeds the primary endpoint's power plan asks for (None without a plan)."""
        return next((p.seeds for p in self.plans() if p.family == "primary"), None)


def override_key(override: str) -> str:
    """The key an override sets: 'model' for 'model=vit', 'model.depth' for '+model.depth=1'."""
    text = override.lstrip("~+")
    return text.split("=", 1)[0].strip()


def merge_overrides(*lists: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Concatenate override lists; a later override of the same key replaces the earlier one."""
    merged: dict[str, str] = {}
    for overrides in lists:
        for override in overrides:
            key = override_key(override)
            merged.pop(key, None)
            merged[key] = override
    return tuple(merged.values())


def spec_path(table: str) -> Path:
    """tables/<table>.yaml, or `table` itself when it is a path to a YAML file."""
    candidate = Path(table)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return TABLES / f"{table}.yaml"


def available_tables() -> list[str]:
    return sorted(p.stem for p in TABLES.glob("*.yaml"))


def load_spec(
    table: str, scale: str = "paper", seeds: list[int] | None = None, extra: list[str] = ()
) -> TableSpec:
    """Read and check a spec at one scale. ``seeds`` replaces the spec's seeds; ``extra``
    overrides go after everything else in every run (e.g. trainer.devices=cuda)."""
    path = spec_path(table)
    if not path.exists():
        raise SpecError(
            f"no table spec {path}; the tables are: {', '.join(available_tables()) or 'none'}"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    try:
        return _parse(raw, path, scale, seeds, list(extra))
    except SpecError as error:  # the parser names the field; the file goes in front
        raise SpecError(f"{path}: {error}") from None


# --------------------------------------------------------------------------- parsing
# Each function below checks one part of a spec and raises SpecError("<field>: <problem>").

# The keys each level of a spec may have (anything else is refused, so a removed or
# misspelt key cannot be silently ignored).
TOP_KEYS = (
    "title", "seeds", "metrics", "columns", "baseline", "pairs", "primary", "paper_source",
    "notes", "scales",
)  # fmt: skip
SCALE_METRIC_KEYS = (
    "label", "margin", "margin_reason", "margin_history", "paired_sd", "paired_sd_reason",
    "time_to_target",
)  # fmt: skip
METRIC_KEYS = (
    "key", "select", "higher_is_better", "decimals", "chance", "chance_basis", "collapse_key",
    *SCALE_METRIC_KEYS,
)  # fmt: skip
HISTORY_KEYS = ("margin", "from", "until", "reason")
TARGET_KEYS = ("target", "target_reason", "margin", "margin_reason")
PRIMARY_KEYS = ("metric", "rows", "reason")
COLUMN_KEYS = ("name", "overrides")
SCALE_KEYS = (
    "title", "seeds", "overrides", "runs_subdir", "results_subdir", "cost", "metrics",
    "columns", "column_overrides", "notes", "rows",
)  # fmt: skip
COST_KEYS = ("unit", "per_run", "per_launch")
ROW_KEYS = ("name", "overrides", "epoch", "cost", "paper", "targets", "column_overrides")


def _invalid(where: str, message: str) -> SpecError:
    return SpecError(f"{where}: {message}")


def _require(valid: Any, where: str, message: str) -> None:
    """Raise unless ``valid``; the message is built either way, so it must never fail to
    format (the few that could, on odd values, raise _invalid(...) themselves)."""
    if not valid:
        raise _invalid(where, message)


def _known(item: dict, allowed: tuple[str, ...], where: str) -> None:
    _require(isinstance(item, dict), where, f"a mapping with the keys {', '.join(allowed)}")
    unknown = set(item) - set(allowed)
    _require(not unknown, where, f"unknown {sorted(unknown)}; the keys are {', '.join(allowed)}")


def _overrides(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    strings = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    _require(strings, where, "overrides must be a list of Hydra overrides (strings)")
    for override in value:
        key = override_key(override)
        ok = "=" in override or override.startswith("~")
        _require(ok, where, f"{override!r} is not a key=value override")
        _require(key != "seed", where, "seeds come from `seeds`, not from overrides")
        _require(
            not key.startswith("hydra") and key != "launcher",
            where,
            f"{override!r}: launchers and Hydra settings are chosen by scripts/reproduce.py, "
            "not by a table spec",
        )
    return tuple(value)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(number, where, f"{value!r} is not a number")
    return float(value)


def _margin(value: Any, where: str) -> float | None:
    margin = _number(value, where)
    _require(margin is None or margin > 0, where, f"{value!r}: a margin is a number > 0")
    return margin


def _reasoned_margin(item: dict, where: str) -> tuple[float | None, str | None]:
    reason = item.get("margin_reason")
    together = (reason is None) == (item.get("margin") is None)
    _require(together, where, "margin and margin_reason go together")
    return _margin(item.get("margin"), f"{where}.margin"), reason and str(reason)


def _paired_sd(item: dict, margin: float | None, where: str) -> float | None:
    """The assumed paired sd of the power plan: with its reason and a margin, > 0."""
    given = [item.get(k) is not None for k in ("paired_sd", "paired_sd_reason")]
    if not any(given):
        return None
    together = all(given) and margin is not None
    _require(together, where, "paired_sd and paired_sd_reason go together, with a margin")
    sd = _number(item["paired_sd"], f"{where}.paired_sd")
    _require(sd > 0, f"{where}.paired_sd", f"{sd!r}: an sd is a number > 0")
    return sd


def _margin_history(value: Any, where: str) -> tuple[MarginChange, ...]:
    """Earlier margins: each with its value, the dates it held and why it was set."""
    if value is None:
        return ()
    _require(isinstance(value, list), where, "a list of {margin, from, until, reason}")
    changes = []
    for i, entry in enumerate(value):
        at = f"{where}[{i}]"
        _known(entry, HISTORY_KEYS, at)
        complete = set(entry) == set(HISTORY_KEYS)
        _require(complete, at, f"each earlier margin has {', '.join(HISTORY_KEYS)}")
        margin = _margin(entry["margin"], f"{at}.margin")
        changes.append(
            MarginChange(margin, str(entry["from"]), str(entry["until"]), str(entry["reason"]))
        )
    return tuple(changes)


def _time_to_target(base: Metric, value: Any, where: str) -> Metric | None:
    """The derived metric "epochs until ``base`` first reaches its target"."""
    if value is None:
        return None
    _known(value, TARGET_KEYS, where)
    target = _number(value.get("target"), f"{where}.target")
    reasoned = value.get("target_reason") is not None
    _require(reasoned, where, "a target_reason (the target itself here or in every row)")
    margin, reason = _reasoned_margin(value, where)
    return Metric(
        key=base.key + TIME_TO_TARGET,
        label=f"Epochs to target, {base.label}",
        select="final",
        higher_is_better=False,
        decimals=1,
        margin=margin,
        margin_reason=reason,
        collapse_key=base.prediction_key,
        source=base.key,
        target=target,
        target_reason=str(value["target_reason"]),
    )


def _metric(item: Any, at_scale: Any, scale: str, where: str) -> list[Metric]:
    """One spec metric with its scale's settings: the metric, and its time-to-target
    metric when it declares one."""
    _require(isinstance(item, dict) and "key" in item, where, "each metric needs a `key`")
    _known(item, METRIC_KEYS, where)
    _known(at_scale or {}, SCALE_METRIC_KEYS, f"scales.{scale}.metrics.{item['key']}")
    item = {**item, **(at_scale or {})}
    select = item.get("select", "final")
    _require(select in SELECTS, where, f"select={select!r}; choose one of {', '.join(SELECTS)}")
    decimals = item.get("decimals", 2)
    valid = isinstance(decimals, int) and not isinstance(decimals, bool) and decimals >= 0
    _require(valid, where, f"decimals={decimals!r} is not an integer >= 0")
    basis = item.get("chance_basis")
    with_chance = basis is None or item.get("chance") is not None
    _require(with_chance, where, "chance_basis without a chance level")
    margin, reason = _reasoned_margin(item, where)
    metric = Metric(
        key=item["key"],
        label=str(item.get("label", item["key"])),
        select=select,
        higher_is_better=bool(item.get("higher_is_better", True)),
        decimals=decimals,
        chance=_number(item.get("chance"), f"{where}.chance"),
        chance_basis=None if basis is None else str(basis),
        margin=margin,
        margin_reason=reason,
        margin_history=_margin_history(item.get("margin_history"), f"{where}.margin_history"),
        paired_sd=_paired_sd(item, margin, where),
        paired_sd_reason=item.get("paired_sd_reason"),
        collapse_key=None if item.get("collapse_key") is None else str(item["collapse_key"]),
    )
    derived = _time_to_target(metric, item.get("time_to_target"), f"{where}.time_to_target")
    return [metric] if derived is None else [metric, derived]


def _metrics(items: Any, at_scale: Any, scale: str) -> list[Metric]:
    """The spec's metrics, each with its scale's settings, then their time-to-target ones."""
    at_scale = at_scale or {}
    where = f"scales.{scale}.metrics"
    _require(isinstance(at_scale, dict), where, "a mapping of metric key -> settings")
    metrics = []
    for i, item in enumerate(items or []):
        key = item.get("key") if isinstance(item, dict) else None
        metrics += _metric(item, at_scale.get(key), scale, f"metrics[{i}]")
    unknown = set(at_scale) - {m.key for m in metrics}
    _require(not unknown, where, f"no metric {sorted(unknown)}")
    keys = [m.key for m in metrics]
    _require(len(set(keys)) == len(keys), "metrics", f"each metric key once: {keys}")
    _require(metrics, "metrics", "list at least one metric")
    return metrics


def _columns(items: Any, extra_by_column: Any, scale: str) -> list[Column]:
    """Every column of the spec, with what its scale adds to its overrides."""
    extra_by_column = extra_by_column or {}
    columns = []
    for i, item in enumerate(items or []):
        named = isinstance(item, dict) and "name" in item
        _require(named, f"columns[{i}]", "each column needs a `name`")
        _known(item, COLUMN_KEYS, f"columns[{i}]")
        name = str(item["name"])
        overrides = _overrides(item.get("overrides"), f"columns[{i}]")
        extra = _overrides(extra_by_column.get(name), f"scales.{scale}.column_overrides.{name}")
        columns.append(Column(name, overrides + extra))
    names = [c.name for c in columns]
    distinct = len(columns) >= 1 and len(set(names)) == len(names)
    _require(distinct, "columns", "list at least one column, with distinct names")
    unknown = set(extra_by_column) - set(names)
    _require(not unknown, f"scales.{scale}.column_overrides", f"no column {sorted(unknown)}")
    return columns


def _baseline_and_pairs(
    raw: dict, scaled: dict, columns: list[Column], scale: str
) -> tuple[str, list[list[str]], list[Column]]:
    """(the baseline, the pairs [column, baseline column], the columns this scale runs)."""
    names = [c.name for c in columns]
    baseline = raw.get("baseline", names[0])
    _require(baseline in names, "baseline", f"{baseline!r} is not a column ({', '.join(names)})")
    pairs = raw.get("pairs") or [[name, baseline] for name in names if name != baseline]
    for pair in pairs:
        valid = isinstance(pair, list) and len(pair) == 2 and set(pair) <= set(names)
        _require(valid, "pairs", f"{pair!r}: each pair is [column, baseline column]")
    if "columns" in scaled:  # a scale may run a subset of the columns
        keep = scaled["columns"]
        valid = isinstance(keep, list) and baseline in keep and set(keep) <= set(names)
        _require(valid, f"scales.{scale}.columns", f"a list of column names with {baseline!r}")
        columns = [c for c in columns if c.name in keep]
        pairs = [pair for pair in pairs if set(pair) <= set(keep)]
    return baseline, pairs, columns


def _row(item: Any, where: str, metrics: list[Metric], columns: list[str]) -> Row:
    _require(isinstance(item, dict) and "name" in item, where, "each row needs a `name`")
    _known(item, ROW_KEYS, where)
    epoch = item.get("epoch")
    integer = isinstance(epoch, int) and not isinstance(epoch, bool)
    _require(epoch is None or integer, where, f"epoch={epoch!r} is not an integer")
    paper = item.get("paper") or {}
    for column, values in paper.items():
        valid = column in columns and isinstance(values, dict)
        _require(valid, f"{where}.paper", f"{column!r} is not a column with values")
        for metric, value in values.items():
            _number(value, f"{where}.paper.{column}.{metric}")
    targets = item.get("targets") or {}
    sources = {m.source for m in metrics if m.time_to_target}
    if not isinstance(targets, dict) or not set(targets) <= sources:
        raise _invalid(f"{where}.targets", f"targets of {sorted(sources)} (time_to_target)")
    whole_runs = epoch is None or not sources
    _require(whole_runs, where, "time_to_target reads whole runs, not a row's epoch")
    for metric in metrics:
        if metric.time_to_target:
            target = targets.get(metric.source, metric.target)
            _require(target is not None, where, f"no time-to-target target for {metric.source}")
    by_column = item.get("column_overrides") or {}
    _require(isinstance(by_column, dict), f"{where}.column_overrides", "a column -> list mapping")
    unknown = set(by_column) - set(columns)
    _require(not unknown, f"{where}.column_overrides", f"no column {sorted(unknown)}")
    return Row(
        name=str(item["name"]),
        overrides=_overrides(item.get("overrides"), where),
        epoch=epoch,
        cost=_number(item.get("cost"), f"{where}.cost"),
        paper=paper,
        targets={k: _number(v, f"{where}.targets.{k}") for k, v in targets.items()},
        column_overrides={
            column: _overrides(value, f"{where}.column_overrides.{column}")
            for column, value in by_column.items()
        },
    )


def _rows(items: Any, metrics: list[Metric], columns: list[str], scale: str) -> list[Row]:
    rows = [
        _row(item, f"scales.{scale}.rows[{i}]", metrics, columns)
        for i, item in enumerate(items or [])
    ]
    distinct = rows and len({r.name for r in rows}) == len(rows)
    _require(distinct, "rows", f"scale {scale!r} needs at least one row, with distinct names")
    return rows


def _seeds(chosen: list[int] | None, in_spec: Any) -> tuple[int, ...]:
    seeds = tuple(chosen) if chosen is not None else tuple(in_spec)
    valid = seeds and all(isinstance(s, int) and s >= 0 for s in seeds)
    _require(valid, "seeds", f"{seeds!r}: seeds are integers >= 0")
    return seeds


def _cost(cost: dict) -> Cost:
    return Cost(
        unit=str(cost.get("unit", "hours")),
        per_run=_number(cost.get("per_run", 0.0), "cost.per_run") or 0.0,
        per_launch=_number(cost.get("per_launch", 0.0), "cost.per_launch") or 0.0,
    )


def _primary(value: Any, metrics: list[Metric], rows: list[Row]) -> Primary:
    """The primary endpoint; a spec that declares none has its first metric on every row,
    as a spec without a baseline has its first column."""
    names = tuple(r.name for r in rows)
    if value is None:
        return Primary(metrics[0].key, names, "not declared: the spec's first metric")
    _known(value, PRIMARY_KEYS, "primary")
    keys = [m.key for m in metrics]
    if value.get("metric") not in keys or not value.get("reason"):
        raise _invalid("primary", f"name one metric ({', '.join(keys)}) and the reason")
    chosen = value.get("rows", "all")
    _require(chosen in ("all", "last"), "primary.rows", f"{chosen!r}; choose all or last")
    return Primary(str(value["metric"]), names if chosen == "all" else names[-1:], value["reason"])


def _check_plans(spec: TableSpec) -> None:
    """Every power plan must be reachable: a margin the seeds can detect at the assumed sd."""
    for plan in spec.plans():
        m = plan.metric
        _require(
            plan.seeds is not None,
            f"metrics {m.key}",
            f"margin {m.margin:g} with paired sd {m.paired_sd:g} needs too many seeds",
        )


def _parse(
    raw: Any, path: Path, scale: str, seeds: list[int] | None, extra: list[str]
) -> TableSpec:
    _require(isinstance(raw, dict), "top level", "a spec is a mapping")
    _known(raw, TOP_KEYS, "top level")
    scales = raw.get("scales") or {}
    if scale not in scales:
        raise _invalid("scales", f"no scale {scale!r}; it has: {', '.join(scales) or 'none'}")
    scaled = scales[scale] or {}
    _known(scaled, SCALE_KEYS, f"scales.{scale}")
    metrics = _metrics(raw.get("metrics"), scaled.get("metrics"), scale)
    every_column = _columns(raw.get("columns"), scaled.get("column_overrides"), scale)
    baseline, pairs, columns = _baseline_and_pairs(raw, scaled, every_column, scale)
    rows = _rows(scaled.get("rows"), metrics, [c.name for c in every_column], scale)
    cost = scaled.get("cost") or {}
    _known(cost, COST_KEYS, f"scales.{scale}.cost")
    spec = TableSpec(
        name=path.stem,
        path=path,
        scale=scale,
        title=str(scaled.get("title", raw.get("title", path.stem))),
        seeds=_seeds(seeds, scaled.get("seeds", raw.get("seeds", (0, 1, 2)))),
        metrics=tuple(metrics),
        columns=tuple(columns),
        baseline=baseline,
        pairs=tuple((str(a), str(b)) for a, b in pairs),
        rows=tuple(rows),
        scale_overrides=_overrides(scaled.get("overrides"), f"scales.{scale}.overrides"),
        runs_subdir=str(scaled.get("runs_subdir", "") or ""),
        results_subdir=str(scaled.get("results_subdir", "") or ""),
        cost=_cost(cost),
        paper_source=raw.get("paper_source"),
        notes=tuple(raw.get("notes") or ()) + tuple(scaled.get("notes") or ()),
        primary=_primary(raw.get("primary"), metrics, rows),
    )
    _check_plans(spec)
    _expand(spec, _overrides(extra, "extra overrides"))
    return spec


def _expand(spec: TableSpec, extra: tuple[str, ...]) -> None:
    """Fill spec.cells and spec.groups: cells with the same merged overrides share runs."""
    index: dict[tuple[str, ...], int] = {}
    group_cells: list[list[str]] = []
    group_cost: list[float] = []
    cells = []
    for row in spec.rows:
        for column in spec.columns:
            overrides = merge_overrides(
                spec.scale_overrides,
                row.overrides,
                column.overrides,
                row.column_overrides.get(column.name, ()),
                extra,
            )
            if overrides not in index:
                index[overrides] = len(index)
                group_cells.append([])
                group_cost.append(row.cost if row.cost is not None else spec.cost.per_run)
            cell = Cell(row, column, index[overrides])
            group_cells[cell.group].append(cell.name)
            cells.append(cell)
    spec.cells = tuple(cells)
    spec.groups = tuple(
        RunGroup(overrides, tuple(group_cells[i]), group_cost[i])
        for overrides, i in sorted(index.items(), key=lambda item: item[1])
    )


# --------------------------------------------------------------------------- run folders


@dataclass(frozen=True)
class PlannedRun:
    """One run of a table: its full override list and the run folder Hydra gives it."""

    group: int
    seed: int
    overrides: tuple[str, ...]  # paths.runs, the cell's overrides, seed
    folder: Path | None  # None when the cell's config does not compose
    error: str | None = None


_PLAIN_VALUE = re.compile(r"^[\w/.:+@%-]*$")


def quote_value(value: str) -> str:
    """A value as a Hydra override accepts it (quoted when it has spaces or odd characters)."""
    if _PLAIN_VALUE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def plan_runs(
    spec: TableSpec,
    runs_dir: str | Path,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> list[PlannedRun]:
    """Compose every run group with Hydra (as run.py would) and derive each run's folder
    from the config's own folder template, so the table finds exactly what run.py writes.
    A table's folders are readable, without the config hash (``folder_hash=false``): the
    check below that no two configs share one stands in for it.
    ``check`` (e.g. agr_suite.core.config.validate) gets each resolved config. A group that
    does not compose or fails the check gives runs with ``error`` set instead of a folder."""
    from hydra import initialize_config_dir

    root = Path(runs_dir) / spec.runs_subdir if spec.runs_subdir else Path(runs_dir)
    paths_override = f"paths.runs={quote_value(str(root))}"
    planned: list[PlannedRun] = []
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for index, group in enumerate(spec.groups):
            base = merge_overrides([paths_override, "folder_hash=false"], group.overrides)
            try:
                folders, error = _run_folders(base, spec.seeds, check), None
            except Exception as exc:  # any composition error is reported against its cells
                folders, error = {}, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            planned += [
                PlannedRun(index, seed, (*base, f"seed={seed}"), folders.get(seed), error)
                for seed in spec.seeds
            ]
    _check_distinct_folders(spec, planned)
    return planned


def _run_folders(
    overrides: tuple[str, ...], seeds: tuple[int, ...], check: Callable | None
) -> dict[int, Path]:
    """Seed -> the folder run.py gives the config of ``overrides`` (composed once, checked
    with ``check``), inside an initialized Hydra config directory."""
    from hydra import compose
    from omegaconf import OmegaConf

    cfg = compose("config", overrides=[*overrides, f"seed={seeds[0]}"], return_hydra_config=True)
    if check is not None:
        job_keys = [key for key in cfg if key != "hydra"]
        check(OmegaConf.to_container(OmegaConf.masked_copy(cfg, job_keys), resolve=True))
    OmegaConf.set_readonly(cfg, False)
    folders = {}
    for seed in seeds:
        cfg.seed = seed
        folders[seed] = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
    return folders


def _check_distinct_folders(spec: TableSpec, planned: list[PlannedRun]) -> None:
    """Two different configs writing one folder would skip or resume each other's runs."""
    owner: dict[Path, PlannedRun] = {}
    for run in planned:
        if run.folder is None:
            continue
        other = owner.setdefault(run.folder, run)
        if other.group != run.group:
            first, second = spec.groups[other.group], spec.groups[run.group]
            raise SpecError(
                f"{spec.where}: cells {', '.join(first.cells)} and {', '.join(second.cells)} "
                f"differ in their overrides but share the run folder {run.folder}; give them "
                "distinct experiment_name overrides (e.g. experiment_name=table3-wd0.01)"
            )


def parse_seeds(text: str | None) -> list[int] | None:
    """A command line's ``--seeds 0,1,2`` (None: the spec's own); SystemExit otherwise."""
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"error: --seeds {text!r}: give integers separated by commas") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds {text!r}: give distinct integers >= 0")
    return seeds
