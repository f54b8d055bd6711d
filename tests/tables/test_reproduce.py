"""scripts/reproduce.py: a dry run lists exactly the runs of each table spec and starts
nothing; finished runs are skipped; a cell that does not compose is a clear error; a tiny
sweep through hydra-submitit-launcher's local executor trains for real, and the tables
are made from its run folders."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agr_suite.launch import start_runs  # noqa: E402
from scripts import reproduce  # noqa: E402

TABLES = ["table1", "table2", "table3", "ablation_agr", "neighbours"]


def expected_runs(table: str, scale: str, runs_dir: Path) -> set[tuple[int, frozenset]]:
    """The runs a spec asks for, expanded by hand from the YAML: for each row and column
    (the scale's own lists where it has them) and seed, the scale's, row's and column's
    overrides, then the row's own for that column, a later one replacing an earlier one of
    the same key (a row's batch size replaces the scale's); cells with the same overrides
    are the same runs."""
    raw = yaml.safe_load((ROOT / "tables" / f"{table}.yaml").read_text())
    scaled = raw["scales"][scale]
    rows = scaled["rows"]
    columns = [c for c in raw["columns"] if c["name"] in scaled.get("columns", [c["name"]])]
    extra = scaled.get("column_overrides", {})
    root = runs_dir / scaled["runs_subdir"] if scaled.get("runs_subdir") else runs_dir
    runs = set()
    for row in rows:
        for column in columns:
            overrides = [
                f"paths.runs={root}",
                "folder_hash=false",  # a table's run folders are readable
                *scaled.get("overrides", []),
                *row.get("overrides", []),
                *column.get("overrides", []),
                *extra.get(column["name"], []),
                *row.get("column_overrides", {}).get(column["name"], []),
            ]
            by_key = {}
            for override in overrides:
                by_key[override.split("=")[0].lstrip("+")] = override
            for seed in scaled.get("seeds", raw["seeds"]):  # the scale's seeds, if it has its own
                runs.add((seed, frozenset(by_key.values())))
    return runs


def listed_runs(output: str) -> set[tuple[int, frozenset]]:
    """Parse the dry run: a header with the shared overrides, then one line per run."""
    runs = set()
    common: list[str] = []
    for line in output.splitlines():
        if line.startswith("# ") and "python run.py " in line:
            common = line.split("python run.py ", 1)[1].split()
        elif " seed=" in line and "  -> " in line:
            words = line.split("  -> ")[0].split()
            seed = int(words[1].removeprefix("seed="))
            runs.add((seed, frozenset(common + words[2:])))
    return runs


@pytest.mark.parametrize(
    "scale",
    [pytest.param("paper", marks=pytest.mark.slow), "mini"],  # paper: make test-slow
)
@pytest.mark.parametrize("table", TABLES)
def test_dry_run_lists_exactly_the_runs_of_the_spec(tmp_path, capsys, table, scale):
    code = reproduce.main([table, "--scale", scale, "--dry-run", "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if "  -> " in line]
    expected = expected_runs(table, scale, tmp_path)
    assert len(lines) == len(expected)  # one line per run, none twice
    assert listed_runs(out) == expected
    assert all(line.startswith("missing ") for line in lines)
    assert f"{len(expected)} runs in" in out and "estimated cost" in out
    assert list(tmp_path.iterdir()) == []  # started nothing


def test_the_papers_table1_values_are_in_its_spec():
    raw = yaml.safe_load((ROOT / "tables" / "table1.yaml").read_text())
    rows = {row["epoch"]: row["paper"] for row in raw["scales"]["paper"]["rows"]}
    # the README's columns 10, 400, ..., 2000 are the evaluations after our epochs 1, 401, ...
    epochs = (1, 401, 801, 1201, 1601, 2000)
    adan = [rows[e]["Adan"]["is_mean"] for e in epochs]
    agr = [rows[e]["Adan(AGR)"]["is_mean"] for e in epochs]
    assert adan == [4.31, 8.14, 8.85, 9.18, 9.19, 9.22]
    assert agr == [4.38, 8.32, 8.86, 9.18, 9.26, 9.34]
    assert "README" in raw["paper_source"]


def test_seeds_and_extra_overrides_from_the_command_line(tmp_path, capsys):
    args = ["table2", "--scale", "mini", "--dry-run", "--seeds", "5,7", "--runs-dir", str(tmp_path)]
    assert reproduce.main([*args, "--", "trainer.epochs=1"]) == 0
    out = capsys.readouterr().out
    seeds = {seed for seed, _ in listed_runs(out)}
    assert seeds == {5, 7}
    assert all("trainer.epochs=1" in overrides for _, overrides in listed_runs(out))
    assert not any("trainer.epochs=3" in overrides for _, overrides in listed_runs(out))


def write_completed(folder: Path, top1: float) -> None:
    folder.mkdir(parents=True)
    results = {"status": "completed", "metrics": {"top1": top1}, "best": {}, "agr": {}}
    (folder / "results.json").write_text(json.dumps(results))


SKIP_SPEC = """
title: Skips
seeds: [0]
metrics: [{key: top1, label: Top-1}]
columns:
  - {name: AdamW, overrides: [optimizer=adamw]}
  - {name: AGR, overrides: [optimizer=adamw_agr]}
  - {name: SGD, overrides: [optimizer=sgd]}
scales:
  mini:
    runs_subdir: mini
    overrides: [experiment_name=skips, dataset=digits, trainer.devices=cpu]
    rows:
      - {name: ResNet, overrides: [model=resnet18]}
      - {name: VGG, overrides: [model=vgg11]}
"""


def test_completed_runs_are_skipped_and_an_all_done_table_only_aggregates(
    tmp_path, capsys, monkeypatch
):
    launched = []
    monkeypatch.setattr(
        start_runs, "in_multirun", lambda pending, *a: launched.append(pending) or 0
    )
    spec = tmp_path / "skips.yaml"
    spec.write_text(SKIP_SPEC)
    runs = tmp_path / "runs"
    common = [str(spec), "--scale", "mini", "--runs-dir", str(runs)]
    done = {  # five of the six runs
        "digits-resnet18-adamw": 80.0,
        "digits-resnet18-adamw_agr": 81.0,
        "digits-resnet18-sgd": 82.0,
        "digits-vgg11-adamw": 83.0,
        "digits-vgg11-sgd": 85.0,
    }
    for name, top1 in done.items():
        write_completed(runs / "mini" / "skips" / name / "seed0", top1)

    assert reproduce.main([*common, "--results-dir", str(tmp_path / "out")]) == 0
    (pending,) = launched  # one launch, with the one unfinished run only
    assert [run.folder for run in pending] == [
        runs / "mini" / "skips" / "digits-vgg11-adamw_agr" / "seed0"
    ]
    write_completed(pending[0].folder, 84.0)
    launched.clear()
    assert reproduce.main([*common, "--results-dir", str(tmp_path / "out")]) == 0
    assert launched == [] and "every run already completed" in capsys.readouterr().out
    with (tmp_path / "out" / "skips.csv").open() as handle:
        means = {(row["row"], row["column"]): float(row["mean"]) for row in csv.DictReader(handle)}
    assert means == {
        ("ResNet", "AdamW"): 80.0,
        ("ResNet", "AGR"): 81.0,
        ("ResNet", "SGD"): 82.0,
        ("VGG", "AdamW"): 83.0,
        ("VGG", "AGR"): 84.0,
        ("VGG", "SGD"): 85.0,
    }


def test_a_cell_that_does_not_compose_names_the_spec_and_the_cell(tmp_path, capsys):
    spec = tmp_path / "broken.yaml"
    spec.write_text(
        (ROOT / "tables" / "table2.yaml")
        .read_text()
        .replace(
            "overrides: [experiment=table2/mini/digits_vgg11]",
            "overrides: [experiment=table2/mini/digits_vgg11, model=vgg99]",
        )
    )
    code = reproduce.main([str(spec), "--scale", "mini", "--runs-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(spec) in err and "digits / VGG-11 (width 16)" in err
    assert "vgg99" in err
    assert not (tmp_path / "r").exists()  # nothing launched


def test_a_rows_overrides_for_an_unknown_column_are_refused(tmp_path, capsys):
    spec = tmp_path / "typo.yaml"
    spec.write_text(
        (ROOT / "tables" / "neighbours.yaml")
        .read_text()
        .replace("AdamW lr/2: [optimizer.lr=5.0e-4]  # half the preset's", "AdamW lr/3: [x=1]  #")
    )
    code = reproduce.main([str(spec), "--scale", "mini", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "scales.mini.rows[1].column_overrides" in err and "AdamW lr/3" in err


TINY_SPEC = """
title: Tiny sweep
seeds: [0]
metrics:
  - {key: top1, label: Top-1 (%), select: final}
columns:
  - {name: AdamW, overrides: [optimizer=adamw]}
  - {name: AdamW(AGR), overrides: [optimizer=adamw_agr]}
baseline: AdamW
scales:
  mini:
    runs_subdir: mini
    results_subdir: mini
    # experiment=smoke names its own folder level (experiment_name: smoke), as the table
    # presets do: the runs must land where the table looks for them.
    overrides: [experiment=smoke, trainer.devices=cpu, trainer.num_workers=0,
                trainer.epochs=1, trainer.batch_size=16, trainer.limit_batches=2,
                trainer.log_every=1, scheduler=constant]
    rows:
      - name: digits / ViT
        overrides: [model=vit, model.embed_dim=16, model.depth=1, model.num_heads=2]
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_tiny_sweep_through_submitit_local_runs_and_is_aggregated(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two run processes on two cores
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    args = [str(spec), "--scale", "mini", "--runs-dir", str(tmp_path / "runs")]
    args += ["--results-dir", str(tmp_path / "results")]
    started = time.time()
    code = reproduce.main([*args, "--launcher", "submitit_local"])
    out = capsys.readouterr().out
    print(f"submitit_local sweep of 2 runs: {time.time() - started:.1f}s")
    assert code == 0, out
    folders = [
        tmp_path / "runs" / "mini" / "smoke" / f"digits-vit-{o}" / "seed0"
        for o in ("adamw", "adamw_agr")
    ]
    for folder in folders:
        assert json.loads((folder / "results.json").read_text())["status"] == "completed"
    # submitit ran them: its pickles and logs are kept beside the run list
    assert list((tmp_path / "runs" / "mini" / "tiny" / ".submitit").iterdir())
    with (tmp_path / "results" / "mini" / "tiny.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["n"]) for row in rows] == [1, 1]
    for row, folder in zip(rows, folders):
        top1 = json.loads((folder / "results.json").read_text())["metrics"]["top1"]
        assert float(row["mean"]) == pytest.approx(top1)
    stamps = [(folder / "results.json").stat().st_mtime_ns for folder in folders]

    # The same command again: nothing to run, nothing rewritten, the table made again.
    assert reproduce.main([*args, "--launcher", "submitit_local"]) == 0
    assert "every run already completed" in capsys.readouterr().out
    assert [(folder / "results.json").stat().st_mtime_ns for folder in folders] == stamps


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("seed", range(20))
def test_shards_split_every_run_once_within_4_3_of_the_best_split(count, seed):
    """Each run in exactly one shard, in its run order; the heaviest shard within 4/3 of the
    best possible heaviest shard, found by trying every assignment (Graham's bound for
    longest-first)."""
    import itertools
    import random

    rng = random.Random(seed)
    costs = [rng.choice([1.0, 2.0, 5.0, 13.0]) * rng.random() for _ in range(rng.randint(1, 8))]
    groups = start_runs.shards(costs, count)
    assert sorted(i for group in groups for i in group) == list(range(len(costs)))
    assert all(group == sorted(group) and group for group in groups)
    best = min(
        max(sum(c for c, g in zip(costs, assign) if g == k) for k in range(count))
        for assign in itertools.product(range(count), repeat=len(costs))
    )
    assert max(sum(costs[i] for i in group) for group in groups) <= best * 4 / 3 + 1e-12


@pytest.mark.parametrize(
    ("gpus", "extra", "message"),
    [(["0"], [], "--shards is for machines without GPUs"), ([], ["--jobs", "2"], "give one")],
)
def test_shards_with_gpus_or_with_jobs_is_a_clear_error(
    tmp_path, capsys, monkeypatch, gpus, extra, message
):
    from agr_suite.launch import local_pool

    monkeypatch.setattr(local_pool, "visible_gpus", lambda: gpus)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    args = [str(spec), "--scale", "mini", "--runs-dir", str(tmp_path / "runs"), "--shards", "2"]
    assert reproduce.main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_runs_of_unknown_cost_are_spread_over_the_shards():
    assert sorted(map(len, start_runs.shards([0.0] * 5, 2))) == [2, 3]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_shards_on_cpu_run_the_runs_in_two_processes_and_the_table_is_made(
    tmp_path, capsys, monkeypatch
):
    """Without GPUs, --shards 2: two run.py -m processes, one run each, each logging to its
    own file; both runs complete and the table reads them."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    args = [str(spec), "--scale", "mini", "--runs-dir", str(tmp_path / "runs")]
    args += ["--results-dir", str(tmp_path / "results"), "--shards", "2"]
    assert reproduce.main(args) == 0, capsys.readouterr()
    listings = sorted((tmp_path / "runs" / "mini" / "tiny" / ".reproduce").glob("*shard*.yaml"))
    shard_runs = [yaml.safe_load(listing.read_text())["runs"] for listing in listings]
    assert [len(runs) for runs in shard_runs] == [1, 1]
    assert {o for runs in shard_runs for o in runs[0] if o.startswith("optimizer=")} == {
        "optimizer=adamw",
        "optimizer=adamw_agr",
    }
    assert all(listing.with_suffix(".log").read_text() for listing in listings)
    for optimizer in ("adamw", "adamw_agr"):
        folder = tmp_path / "runs" / "mini" / "smoke" / f"digits-vit-{optimizer}" / "seed0"
        results = json.loads((folder / "results.json").read_text())
        assert results["status"] == "completed"
        # the two processes share the cores
        assert results["environment"]["threads"] == max(1, (os.cpu_count() or 1) // 2)
    with (tmp_path / "results" / "mini" / "tiny.csv").open() as handle:
        assert [int(row["n"]) for row in csv.DictReader(handle)] == [1, 1]


POWER_SPEC = """
title: Power plan
seeds: [0, 1, 2]
metrics:
  - {key: top1, label: Top-1 (%), margin: 1.0, margin_reason: one point}
columns:
  - {name: AdamW, overrides: [optimizer=adamw]}
  - {name: AdamW(AGR), overrides: [optimizer=adamw_agr]}
scales:
  paper:
    cost: {unit: GPU-hours, per_run: 2.0, per_launch: 1.0}
    metrics:
      top1: {paired_sd: 1.0, paired_sd_reason: a guess}
    rows:
      - {name: digits / ResNet-18, overrides: [dataset=digits, model=resnet18]}
"""


def seeds_for_80_percent_power(effect: float, sd: float, alpha: float = 0.05) -> int:
    """The fewest pairs n (at least 3, the fewest the t-test is used with) whose two-sided
    paired t-test at level alpha has power >= 0.8 at `effect`, from scipy's noncentral t."""
    from scipy import stats

    n = 3
    while True:
        df, shift = n - 1, effect / (sd / n**0.5)
        crit = stats.t.ppf(1 - alpha / 2, df)
        if stats.nct.sf(crit, df, shift) + stats.nct.cdf(-crit, df, shift) >= 0.8:
            return n
        n += 1


def test_dry_run_prints_the_power_plan_beside_the_specs_seeds(tmp_path, capsys):
    needed = seeds_for_80_percent_power(1.0, 1.0)  # 10
    spec = tmp_path / "power.yaml"
    spec.write_text(POWER_SPEC)
    code = reproduce.main([str(spec), "--dry-run", "--runs-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0
    # one row, one pair: a primary family of one comparison, planned at alpha/1
    assert (
        "primary top1: margin 1 with an assumed paired sd of 1 at alpha/1 = 0.05 needs "
        f"{needed} seeds (a guess)" in out
    )
    # two columns x one row; 2 GPU-hours a run and 1 per launch
    assert f"the {needed}-seed power plan: {2 * needed} runs, {4 * needed + 1:g} GPU-hours" in out
    assert "the 3-seed plan (this command): 6 runs, 13 GPU-hours" in out


def test_a_power_plan_is_computed_not_written_and_needs_its_reason(tmp_path, capsys):
    """The seeds follow from margin and paired sd; a spec that writes them (the key
    seeds_for_margin is gone) or an sd without its reason is refused."""
    needed = seeds_for_80_percent_power(1.0, 1.0)
    spec = tmp_path / "power.yaml"
    spec.write_text(POWER_SPEC.replace("a guess}", f"a guess, seeds_for_margin: {needed}}}"))
    code = reproduce.main([str(spec), "--dry-run", "--runs-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown ['seeds_for_margin']" in err
    spec.write_text(POWER_SPEC.replace(", paired_sd_reason: a guess", ""))
    assert reproduce.main([str(spec), "--dry-run"]) == 2
    assert "go together" in capsys.readouterr().err


@pytest.mark.parametrize("table", TABLES)
def test_every_paper_scale_margin_has_a_power_plan(table):
    """Every paper-scale margin has an assumed sd with its reason; its seeds are planned at
    alpha/m for the m comparisons of its Holm family (the primary endpoint's own)."""
    from agr_suite.report.spec import load_spec

    spec = load_spec(table, "paper")
    plans = {plan.metric.key: plan for plan in spec.plans()}
    comparisons = len(spec.rows) * len(spec.pairs)
    primary = len(spec.primary.rows) * len(spec.pairs)
    for metric in spec.metrics:
        if metric.margin is None or metric.time_to_target:
            continue
        assert metric.paired_sd is not None and metric.paired_sd_reason, metric.key
        plan = plans[metric.key]
        m = (
            primary
            if metric.key == spec.primary.metric
            else (comparisons * len(spec.metrics) - primary)
        )
        assert plan.family_size == m
        assert plan.seeds == seeds_for_80_percent_power(metric.margin, metric.paired_sd, 0.05 / m)
    assert spec.planned_seeds == plans[spec.primary.metric].seeds


def test_the_docs_power_plan_and_run_count_are_the_specs():
    from agr_suite.report.spec import load_spec

    readme = (ROOT / "docs" / "tables.md").read_text()
    total = 0
    for table in ("table1", "table2", "table3", "ablation_agr", "neighbours"):
        spec = load_spec(table, "paper")
        total += len(spec.groups) * len(spec.seeds)
        runs3, cost3 = len(spec.groups) * 3, 3 * sum(g.cost for g in spec.groups)
        for plan in spec.plans():
            m = plan.metric
            n = seeds_for_80_percent_power(m.margin, m.paired_sd, 0.05 / plan.family_size)
            runs, cost = len(spec.groups) * n, n * sum(g.cost for g in spec.groups)
            line = (
                f"| {table} | `{m.key}` | {plan.family} ({plan.family_size}) | ±{m.margin:g} | "
                f"{m.paired_sd:g} | {n} | {runs} runs, {cost:g} GPU-hours | "
                f"{runs3} runs, {cost3:g} GPU-hours |"
            )
            assert line in readme
    assert f"at paper scale lists {total} runs" in readme


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_portable_cpu_caps_the_cpu_kernels_of_every_run(tmp_path, monkeypatch):
    """--portable-cpu hands every run the AVX2 caps (what a capped run records:
    tests/engine/test_machine.py)."""
    from agr_suite.launch import local_pool

    monkeypatch.setattr(os, "environ", dict(os.environ))  # main's update stays in this test
    for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE"):
        os.environ.pop(key, None)
    monkeypatch.setattr(local_pool, "visible_gpus", lambda: [])
    given = {}

    def pool(jobs, slots, env=None, **kwargs):
        given.update(env or {})
        return local_pool.PoolResult({job.name: 0 for job in jobs})

    monkeypatch.setattr(local_pool, "run_pool", pool)
    args = ["table2", "--scale", "mini", "--shards", "2", "--portable-cpu"]
    args += ["--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    reproduce.main(args)
    caps = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    caps |= {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
    assert {key: given.get(key) for key in caps} == caps
