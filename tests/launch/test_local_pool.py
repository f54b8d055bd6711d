"""The local launcher's process pool (launch/local_pool.py, reproduce.py --launcher local):
runs go one per free slot with that slot's GPU or thread share, never more at once than
there are slots; a failed run fails alone; Ctrl-C stops every process it started, killing
those that ignore it; and the dry run's wall time on N GPUs x K runs per GPU follows the
spec's per-run cost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agr_suite.launch import dry_run, local_pool  # noqa: E402
from agr_suite.launch.local_pool import PoolJob, Slot, make_slots, run_pool, visible_gpus  # noqa: E402
from scripts import reproduce  # noqa: E402

# A job that records when it ran and what it was given, then exits with its code.
JOB = textwrap.dedent(
    """
    import json, os, sys, time
    record, seconds, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    start = time.time()
    env = os.environ.get
    print("gpu", env("CUDA_VISIBLE_DEVICES"), "threads", env("OMP_NUM_THREADS"))
    time.sleep(seconds)
    with open(record, "w") as f:
        json.dump({"start": start, "end": time.time(), "pid": os.getpid()}, f)
    sys.exit(code)
    """
)


def job(tmp_path: Path, name: str, seconds: float = 0.3, code: int = 0) -> PoolJob:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    record = tmp_path / f"{name}.json"
    command = [sys.executable, str(script), str(record), str(seconds), str(code)]
    return PoolJob(name, command, tmp_path / name / "launch.log")


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8a1f,GPU-77c0"}) == ["GPU-8a1f", "GPU-77c0"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    # CUDA ignores everything from the first invalid entry on; -1 hides every device
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,0"}) == ["1"]


def test_slots_are_k_per_gpu_spread_over_the_gpus_first_and_capped_by_jobs():
    slots = make_slots(["0", "1"], runs_per_gpu=2)
    assert [s.gpu for s in slots] == ["0", "1", "0", "1"]
    assert [s.gpu for s in make_slots(["0", "1"], runs_per_gpu=2, jobs=3)] == ["0", "1", "0"]
    assert slots[0].env() == {"CUDA_VISIBLE_DEVICES": "0"}
    cpu = make_slots([], jobs=2, cpus=2)
    assert [(s.gpu, s.threads) for s in cpu] == [(None, 1), (None, 1)]
    assert cpu[0].env() == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert [s.threads for s in make_slots([], cpus=8)] == [8]
    with pytest.raises(ValueError):
        make_slots(["0"], runs_per_gpu=0)


@pytest.mark.slow
def test_runs_share_the_slots_and_a_failed_run_fails_alone(tmp_path):
    jobs = [job(tmp_path, f"run{i}", seconds=0.5, code=3 if i == 1 else 0) for i in range(5)]
    slots = [Slot("0"), Slot("1")]
    lines: list[str] = []
    result = run_pool(jobs, slots, poll_s=0.05, say=lines.append)

    assert result.codes == {"run0": 0, "run1": 3, "run2": 0, "run3": 0, "run4": 0}
    assert result.failed == ["run1"] and result.exit_code == 1 and not result.interrupted
    spans = [json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(5)]
    # never more than two at once (each span's start, counting the spans that cover it) ...
    for span in spans:
        overlapping = sum(s["start"] <= span["start"] < s["end"] for s in spans)
        assert overlapping <= 2
    # ... and the pool did run two at once: five half-second runs took about three rounds
    wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    assert wall < 5 * 0.5
    # each run's output, after a header naming its slot and command, in its own log
    for j in jobs:
        log = j.log.read_text()
        assert log.startswith("==> ") and " on GPU " in log.splitlines()[0]
        assert j.command[1] in log.splitlines()[0]
        assert "gpu 0 threads" in log or "gpu 1 threads" in log
    assert any("FAILED" in line and "run1" in line for line in lines)


class FakeTime:
    """The pool's clock: each poll's sleep moves it on by ``tick`` seconds, never waiting."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def monotonic(self) -> float:
        return self.now

    def sleep(self, _seconds: float) -> None:
        self.now += self.tick


class FakeRun:
    """A run process that ends ``seconds`` after it started, by the fake clock."""

    def __init__(self, clock: FakeTime, seconds: float, code: int) -> None:
        self.clock, self.end, self.code = clock, clock.now + seconds, code

    def poll(self) -> int | None:
        return self.code if self.clock.now >= self.end else None

    def wait(self) -> int:
        return self.code


def fake_pool(monkeypatch, runs: dict[str, tuple[float, int]], tick: float = 60.0):
    """Runs of the given (seconds, exit code) instead of processes, on a fake clock."""
    clock = FakeTime(tick)
    monkeypatch.setattr(local_pool, "time", clock)
    monkeypatch.setattr(
        local_pool, "_start", lambda job, slot, env: FakeRun(clock, *runs[job.name])
    )


def finish_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("started")]


def test_the_eta_weights_runs_by_their_cost(monkeypatch, tmp_path):
    """Two slots; A (cost 2) runs 1200 s, B, C (cost 1) 600 s, D (cost 2) 1200 s; the clock
    moves 60 s a poll, so a freed slot starts its next run 60 s later. By hand:
    at 600 B ends: 600 s per unit of cost; A (cost 2, 600 s in) has 600 s left; C (600 s)
      goes in the free slot, then D (1200 s) where the first slot comes free (600): 1800 s.
    at 1200 A ends: (600 + 1200) / (1 + 2) = 600 per unit; C (started at 660) has 60 s left,
      D (1200 s) takes the free slot: 1200 s.
    at 1260 D starts, C ends: D has its 1200 s ahead. At 2460 D ends: no ETA left to say."""
    fake_pool(monkeypatch, {"A": (1200, 0), "B": (600, 0), "C": (600, 0), "D": (1200, 0)})
    costs = {"A": 2.0, "B": 1.0, "C": 1.0, "D": 2.0}
    jobs = [PoolJob(n, ["run", n], tmp_path / f"{n}.log", cost=c) for n, c in costs.items()]
    lines: list[str] = []
    assert run_pool(jobs, [Slot("0"), Slot("1")], say=lines.append).exit_code == 0
    assert finish_lines(lines) == [
        "finished  B after 10.0 min [1/4 ended, 0 failed, 1 running, eta 30m]",
        "finished  A after 20.0 min [2/4 ended, 0 failed, 1 running, eta 20m]",
        "finished  C after 10.0 min [3/4 ended, 0 failed, 1 running, eta 20m]",
        "finished  D after 20.0 min [4/4 ended, 0 failed, 0 running]",
    ]


def test_the_eta_counts_runs_without_costs_and_waits_for_a_finished_one(monkeypatch, tmp_path):
    """P fails at 120 s: nothing measured, ``eta ?``. R starts at 180. Q ends at 600: 600 s a
    run (R's cost is unknown, so costs are not used); R, 420 s in, has 180 s left."""
    fake_pool(monkeypatch, {"P": (120, 3), "Q": (600, 0), "R": (600, 0)})
    costs = {"P": 5.0, "Q": 1.0, "R": None}
    jobs = [PoolJob(n, ["run", n], tmp_path / f"{n}.log", cost=c) for n, c in costs.items()]
    lines: list[str] = []
    assert run_pool(jobs, [Slot(None, 1), Slot(None, 1)], say=lines.append).failed == ["P"]
    assert finish_lines(lines) == [
        f"FAILED (exit 3; see {tmp_path / 'P.log'}) P after 2.0 min "
        "[1/3 ended, 1 failed, 1 running, eta ?]",
        "finished  Q after 10.0 min [2/3 ended, 1 failed, 1 running, eta 3m]",
        "finished  R after 10.0 min [3/3 ended, 1 failed, 0 running]",
    ]


# A pool in its own process, so the test can Ctrl-C it: job 0 stops at SIGINT, job 1 ignores
# it and must be killed after the grace period.
POOL = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from agr_suite.launch.local_pool import PoolJob, Slot, run_pool
    tmp = Path({tmp!r})
    stubborn = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)"
    plain = "import time; time.sleep(600)"
    jobs = [PoolJob("plain", [sys.executable, "-c", plain], tmp / "plain.log"),
            PoolJob("stubborn", [sys.executable, "-c", stubborn], tmp / "stubborn.log"),
            PoolJob("never", [sys.executable, "-c", plain], tmp / "never.log")]
    result = run_pool(jobs, [Slot(None, 1), Slot(None, 1)], grace_s=2.0, poll_s=0.05)
    print("codes", sorted(result.codes.items()), flush=True)
    sys.exit(result.exit_code)
    """
)


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_every_run_the_pool_started(tmp_path, sig):
    script = tmp_path / "pool.py"
    script.write_text(POOL.format(root=str(ROOT), tmp=str(tmp_path)))
    pool = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 60
    while len(children_of(pool.pid)) < 2:
        assert time.time() < deadline, "the pool did not start its two runs"
        time.sleep(0.05)
    children = children_of(pool.pid)
    time.sleep(0.5)  # let the stubborn job install its handler
    pool.send_signal(sig)
    out, _ = pool.communicate(timeout=30)

    assert pool.returncode == local_pool.INTERRUPTED, out
    assert "stopping 2 runs" in out and "killing them" in out
    for child in children:
        assert not Path(f"/proc/{child}").exists(), f"run process {child} outlived the pool"
    # the first stopped at SIGINT, the stubborn one was killed, the third never started
    assert f"('plain', -{signal.SIGINT.value})" in out
    assert f"('stubborn', -{signal.SIGKILL.value})" in out
    assert "never" not in out.split("codes", 1)[1] and not (tmp_path / "never.log").exists()


# --------------------------------------------------------------------- reproduce.py integration


def test_makespan_puts_each_run_in_the_first_free_slot():
    assert dry_run.makespan([1.0] * 10, 4) == 3.0  # ceil(10 / 4) rounds of one
    assert dry_run.makespan([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2) == 5.0
    assert dry_run.makespan([], 3) == 0.0


def wall_hours(output: str) -> float:
    (line,) = [line for line in output.splitlines() if line.startswith("# wall time")]
    return float(line.split("about ")[1].split()[0])


@pytest.mark.parametrize(
    "gpus,k",
    [(1, 1), *[pytest.param(g, k, marks=pytest.mark.slow) for g, k in ((48, 1), (24, 2), (12, 4))]],
)
def test_dry_run_prints_the_wall_time_on_n_gpus_with_k_runs_each(
    tmp_path, capsys, monkeypatch, gpus, k
):
    """Table 2 at paper scale, 48 runs, each row's GPU-hours per run from the spec: on one
    GPU the runs take the sum of their costs; on at least as many slots as runs, the longest
    run, K / T times slower when K runs share a GPU with a measured throughput gain T. The
    spec's per-launch cost comes once on top."""
    bench = tmp_path / "gpu.json"
    gain = {1: 1.0, 2: 1.6, 4: 2.0}
    runs_per_gpu = {str(n): {"throughput_vs_1": g} for n, g in gain.items()}
    bench.write_text(json.dumps({"runs_per_gpu": runs_per_gpu}))
    monkeypatch.setattr(dry_run, "GPU_BENCH", bench)
    import yaml

    raw = yaml.safe_load((ROOT / "tables" / "table2.yaml").read_text())
    paper = raw["scales"]["paper"]
    rows = paper["rows"]
    per_run = [row["cost"] if "cost" in row else paper["cost"]["per_run"] for row in rows]
    costs = [c for c in per_run for _ in range(len(raw["columns"]) * len(raw["seeds"]))]
    assert len(costs) == 48
    args = ["table2", "--dry-run", "--runs-dir", str(tmp_path), "--gpus", str(gpus)]
    assert reproduce.main([*args, "--runs-per-gpu", str(k)]) == 0
    out = capsys.readouterr().out
    slowest = sum(costs) if gpus == 1 else max(costs) * k / gain[k]
    expected = slowest + paper["cost"].get("per_launch", 0.0)
    assert wall_hours(out) == pytest.approx(expected, rel=5e-3)
    assert f"on {gpus} GPU" in out and ("measured" in out) == (k > 1)


def test_unmeasured_packing_is_assumed_to_gain_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dry_run, "GPU_BENCH", tmp_path / "absent.json")
    args = ["table3", "--dry-run", "--runs-dir", str(tmp_path), "--gpus", "2"]
    assert reproduce.main([*args, "--runs-per-gpu", "4"]) == 0
    out = capsys.readouterr().out
    assert "assumed to give no more throughput" in out
    # 24 runs on 8 slots of a quarter GPU each: 3 rounds of 4x the per-run cost, i.e. 24 runs
    # on 2 GPUs one after another
    assert wall_hours(out) == pytest.approx(12 * 0.3, rel=5e-3)


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_more_gpus_than_visible_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert reproduce.main(["table2", "--runs-dir", str(tmp_path), "--gpus", "2"]) == 2
    assert "--gpus 2: only 1 GPUs are visible" in capsys.readouterr().err


SPEC = """
title: Pool sweep
seeds: [0]
metrics:
  - {key: top1, label: Top-1 (%), select: final}
columns:
  - {name: digits, overrides: [optimizer=adamw]}
  - {name: CIFAR-10 not staged, overrides: [optimizer=adamw, dataset=cifar10,
                                             dataset.download=false]}
baseline: digits
scales:
  mini:
    runs_subdir: mini
    results_subdir: mini
    overrides: [experiment=smoke, trainer.devices=cpu, trainer.num_workers=0,
                trainer.epochs=1, trainer.batch_size=16, trainer.limit_batches=2,
                trainer.log_every=1, scheduler=constant]
    rows:
      - name: ViT
        overrides: [model=vit, model.embed_dim=16, model.depth=1, model.num_heads=2]
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_jobs_2_on_cpu_runs_each_run_in_its_own_process_and_a_failure_stays_alone(
    tmp_path, capsys, monkeypatch
):
    """Two runs at once: the digits run trains, the CIFAR-10 run fails (no data staged);
    each run's output is in its own launch.log; the table has the digits cell; the same
    command again starts only the failed run."""
    monkeypatch.setattr(local_pool, "visible_gpus", lambda: [])
    spec = tmp_path / "pool.yaml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    args = [str(spec), "--scale", "mini", "--runs-dir", str(runs), "--jobs", "2"]
    args += ["--results-dir", str(tmp_path / "results"), "--", f"paths.data_dir={tmp_path}"]
    assert reproduce.main(args) == 1
    captured = capsys.readouterr()
    assert "launching 2 runs, 2 at a time (CPU (1 threads))" in captured.out
    trained, missing = (
        runs / "mini" / "smoke" / f"{data}-vit-adamw" / "seed0" for data in ("digits", "cifar10")
    )
    assert json.loads((trained / "results.json").read_text())["status"] == "completed"
    assert "epoch" in (trained / "launch.log").read_text()
    failed = json.loads((missing / "results.json").read_text())
    assert failed["status"] == "failed" and "DatasetMissingError" in failed["error"]
    log = (missing / "launch.log").read_text()
    assert "error: CIFAR-10 not found" in log and "download" in log, log
    assert "1 runs failed" in captured.err and str(missing / "launch.log") in captured.err
    with (tmp_path / "results" / "mini" / "pool.csv").open() as handle:
        assert "ViT" in handle.read()

    launched = []
    monkeypatch.setattr(
        local_pool,
        "run_pool",
        lambda jobs, *a, **k: launched.extend(jobs) or local_pool.PoolResult({}),
    )
    assert reproduce.main(args) == 0
    assert [j.log.parent for j in launched] == [missing]


# A sweep of two real runs that would train for a long time, for the Ctrl-C test below.
LONG = (
    SPEC.replace("trainer.epochs=1,", "trainer.epochs=200,")
    .replace("trainer.limit_batches=2,", "trainer.limit_batches=20,")
    .replace("optimizer=adamw, dataset=cifar10", "optimizer=adamw_agr, dataset=digits")
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_during_real_runs_leaves_them_resumable(tmp_path):
    spec = tmp_path / "long.yaml"
    spec.write_text(LONG)
    runs = tmp_path / "runs"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(ROOT / "scripts" / "reproduce.py"), str(spec), "--scale", "mini"]
    command += ["--runs-dir", str(runs), "--jobs", "2", "--results-dir", str(tmp_path / "out")]
    pool = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    results = [
        runs / "mini" / "smoke" / f"digits-vit-{o}" / "seed0" / "results.json"
        for o in ("adamw", "adamw_agr")
    ]
    deadline = time.time() + 300
    while not all(r.exists() and (r.parent / "checkpoints" / "last.pt").exists() for r in results):
        assert pool.poll() is None and time.time() < deadline
        time.sleep(0.5)
    pool.send_signal(signal.SIGINT)
    out, _ = pool.communicate(timeout=120)
    assert pool.returncode == local_pool.INTERRUPTED, out
    for result in results:
        assert json.loads(result.read_text())["status"] == "running"  # interrupted, not failed


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_the_docs_table2_wall_times_are_the_dry_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dry_run, "GPU_BENCH", tmp_path / "absent.json")
    hours = {}
    for gpus in (1, 8):
        args = ["table2", "--dry-run", "--runs-dir", str(tmp_path), "--gpus", str(gpus)]
        assert reproduce.main(args) == 0
        hours[gpus] = wall_hours(capsys.readouterr().out)
    readme = " ".join((ROOT / "docs" / "tables.md").read_text().split())
    claim = f"about {round(hours[1])} hours on one GPU and about {round(hours[8])} hours on 8"
    assert claim in readme
