"""The Slurm sweep bookkeeping without a cluster (launch/slurm.py, scripts/reproduce.py): a
stand-in ``squeue`` on PATH prints what the test says Slurm knows. tests/launch/test_slurm.py
runs the same code against a real Slurm (make test-slurm)."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from agr_suite.launch import reproduce as launch_reproduce
from agr_suite.launch import slurm, start_runs

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts import reproduce  # noqa: E402


@pytest.fixture
def fake_squeue(tmp_path, monkeypatch):
    """Returns a function that sets squeue's output: {task: (state, start)}; every call is
    counted in calls."""
    bin_dir, answer, calls = tmp_path / "bin", tmp_path / "squeue.out", tmp_path / "calls"
    bin_dir.mkdir()
    script = bin_dir / "squeue"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncat {answer}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")

    def set_states(states: dict[str, tuple[str, str]]) -> None:
        answer.write_text("".join(f"{t}|{s}|{start}\n" for t, (s, start) in states.items()))

    set_states({})
    set_states.calls = calls
    return set_states


def test_squeue_reads_every_task_with_its_state_and_start(fake_squeue):
    fake_squeue({"7_0": ("RUNNING", "2026-01-01T10:00:00"), "7_1": ("PENDING", "N/A")})
    assert slurm.squeue(["7"]) == {
        "7_0": ("RUNNING", "2026-01-01T10:00:00"),
        "7_1": ("PENDING", "N/A"),
    }
    # ended jobs too (while Slurm remembers them), every task listed on its own line
    args = fake_squeue.calls.read_text().split()
    assert "--states=all" in args and "--array" in args and "7" in args


def test_no_squeue_means_nothing_is_known(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue at all
    assert slurm.squeue(["7"]) is None
    assert slurm.alive([{"task": "7_0", "overrides": []}]) == ([], None)


def watch(tasks, said, **kwargs):
    watcher = slurm.SweepWatcher(
        tasks, say=said.append, poll_s=0.01, squeue_s=(0.01, 0.01), **kwargs
    )
    return watcher.run()


def test_the_watcher_reports_progress_and_fails_a_task_that_ended_without_a_result(fake_squeue):
    results: dict[str, bool | None] = {"5_0": None, "5_1": None}
    fake_squeue({"5_0": ("RUNNING", "t0"), "5_1": ("RUNNING", "t0")})

    def slurm_side():
        time.sleep(0.3)
        results["5_0"] = True  # its result file landed
        fake_squeue({"5_0": ("COMPLETED", "t0"), "5_1": ("CANCELLED", "t0")})

    threading.Thread(target=slurm_side).start()
    said: list[str] = []
    tasks = {task: (f"seed={i}", lambda task=task: results[task]) for i, task in enumerate(results)}
    started = time.time()
    outcome = watch(tasks, said, grace_s=0.5)
    assert outcome == {"5_0": True, "5_1": "CANCELLED"}
    assert 0.8 <= time.time() - started < 10  # the grace, then done: no waiting forever
    assert said[0] == (
        "slurm job 5: 2 runs submitted, 0 pending, 2 running, 0 finished, 0 failed, eta ?"
    )
    assert said[-1] == "slurm job 5: 2 runs submitted, 0 pending, 0 running, 1 finished, 1 failed"
    assert sum(line.startswith("slurm job 5") for line in said) == 3  # one per change of counts
    assert any("run failed: seed=1 (slurm task 5_1) ended (CANCELLED)" in line for line in said)
    assert not any("sacct" in line for line in said)


def test_a_result_counts_even_when_squeue_has_forgotten_the_task(fake_squeue):
    fake_squeue({})  # already forgotten (MinJobAge passed), but the result is there
    said: list[str] = []
    assert watch({"3": ("seed=0", lambda: False)}, said) == {"3": False}
    assert said[-1].endswith("0 finished, 1 failed")
    assert watch({"3": ("seed=0", lambda: True)}, said) == {"3": True}


def test_a_requeue_is_reported_once_even_when_no_poll_saw_it_pending(fake_squeue):
    results = {"9": None}
    fake_squeue({"9": ("RUNNING", "10:00:00")})

    def slurm_side():
        time.sleep(0.2)
        fake_squeue({"9": ("RUNNING", "10:02:00")})  # restarted between two polls
        time.sleep(0.2)
        results["9"] = True

    threading.Thread(target=slurm_side).start()
    said: list[str] = []
    assert watch({"9": ("seed=0", lambda: results["9"])}, said) == {"9": True}
    assert sum(line.startswith("requeued: seed=0 (slurm task 9)") for line in said) == 1
    assert said[-1].endswith("1 finished, 0 failed (1 requeued)")


def at(hh: int, mm: int) -> float:
    """10:30 on the day of the stand-in squeue's start times, as this machine's clock reads it
    (squeue prints local time)."""
    return datetime(2026, 1, 1, hh, mm).timestamp()


def clocked_watcher(tasks, said, clock, **kwargs):
    return slurm.SweepWatcher(tasks, say=said.append, clock=lambda: clock[0], **kwargs)


@pytest.mark.parametrize(
    "concurrency,wall_time,eta",
    [
        # 7_0 ran 10:00 -> 10:40, 40 min a run; 7_1 (from 10:10) has 10 min left; two slots
        # (two were seen running): 7_2 10:40 -> 11:20, 7_3 10:50 -> 11:30: 50 min from 10:40
        (None, None, "50m"),
        (8, None, "50m"),  # a limit above what the sweep gets does not add slots
        # a limit of one: 7_2 after 7_1 (10:50 -> 11:30), 7_3 after it (-> 12:10)
        (1, None, "1h30m"),
        # the run's own wall time, 30 min: 7_1 (30 min in) ends now, 7_2 and 7_3 take 30 min
        (None, 1800.0, "30m"),
    ],
)
def test_the_summary_estimates_the_time_left_from_finished_tasks(
    fake_squeue, concurrency, wall_time, eta
):
    results: dict[str, bool | None] = {f"7_{i}": None for i in range(4)}
    fake_squeue(
        {
            "7_0": ("RUNNING", "2026-01-01T10:00:00"),
            "7_1": ("RUNNING", "2026-01-01T10:10:00"),
            "7_2": ("PENDING", "N/A"),
            "7_3": ("PENDING", "N/A"),
        }
    )
    tasks = {task: (task, lambda task=task: results[task]) for task in results}
    said: list[str] = []
    clock = [at(10, 30)]
    watcher = clocked_watcher(
        tasks, said, clock, concurrency=concurrency, wall_time=wall_time and (lambda t: wall_time)
    )
    watcher._check_results()
    watcher._check_squeue()
    head = "slurm job 7: 4 runs submitted"
    assert watcher.summary() == f"{head}, 2 pending, 2 running, 0 finished, 0 failed, eta ?"
    clock[0] = at(10, 40)
    results["7_0"] = True
    watcher._check_results()
    assert watcher.summary() == f"{head}, 2 pending, 1 running, 1 finished, 0 failed, eta {eta}"


def test_the_estimate_counts_what_a_requeued_task_ran_before(fake_squeue):
    """9_0 runs 10:00-10:30, is requeued (seen pending), runs again from 10:34 and finishes
    at 10:50: 30 + 16 = 46 min. 9_1 runs from 10:00, restarts at 10:33 between two polls and
    finishes at 10:50: 33 + 17 = 50 min. So 48 min a run; 9_2, 20 min in, has 28 min left."""
    results: dict[str, bool | None] = {"9_0": None, "9_1": None, "9_2": None}
    tasks = {task: (task, lambda task=task: results[task]) for task in results}
    said: list[str] = []
    clock = [at(10, 20)]
    watcher = clocked_watcher(tasks, said, clock)
    polls = [
        (at(10, 20), {"9_0": "10:00", "9_1": "10:00", "9_2": None}),
        (at(10, 30), {"9_0": None, "9_1": "10:00", "9_2": "10:30"}),
        (at(10, 35), {"9_0": "10:34", "9_1": "10:33", "9_2": "10:30"}),
    ]
    for now, starts in polls:
        clock[0] = now
        fake_squeue(
            {
                task: ("RUNNING", f"2026-01-01T{start}:00") if start else ("PENDING", "N/A")
                for task, start in starts.items()
            }
        )
        watcher._check_squeue()
    clock[0] = at(10, 50)
    results["9_0"] = results["9_1"] = True
    watcher._check_results()
    assert watcher.summary() == (
        "slurm job 9: 3 runs submitted, 0 pending, 1 running, 2 finished, 0 failed "
        "(2 requeued), eta 28m"
    )


def test_a_new_line_comes_with_new_counts_not_with_a_new_eta(fake_squeue):
    """The clock moves 7 s at each look, so the ETA changes at every poll; the lines do not."""
    fake_squeue({"3_0": ("COMPLETED", "N/A"), "3_1": ("RUNNING", "N/A")})
    looks = {"3_1": 0}

    def outcome_3_1() -> bool | None:
        looks["3_1"] += 1
        return True if looks["3_1"] > 30 else None

    def clock() -> float:
        ticks[0] += 7.0
        return ticks[0]

    ticks = [at(10, 0)]
    said: list[str] = []
    watcher = slurm.SweepWatcher(
        {"3_0": ("seed=0", lambda: True), "3_1": ("seed=1", outcome_3_1)},
        say=said.append,
        poll_s=0.001,
        heartbeat_s=1e9,
        wall_time=lambda task: 3000.0,
        clock=clock,
    )
    assert watcher.run() == {"3_0": True, "3_1": True}
    assert len(said) == 2, said
    assert said[0].startswith("slurm job 3: 2 runs submitted, 0 pending, 1 running, 1 finished")
    assert ", eta 50m" in said[0] and "eta" not in said[1]


def test_registry_records_runs_and_alive_keeps_the_queued_ones(tmp_path, fake_squeue):
    registry = slurm.registry_path(tmp_path / ".submitit" / "%j")
    assert registry == tmp_path / ".submitit" / "submitted.jsonl"
    slurm.record_submission(registry, [("4_0", ["seed=0"]), ("4_1", ["seed=1"])], "f/%j", 1)
    with registry.open("a") as handle:
        handle.write('{"task": "4_2", "overr')  # a line cut short by a killed writer
    records = slurm.read_registry(registry)
    assert [(r["task"], r["overrides"]) for r in records] == [
        ("4_0", ["seed=0"]),
        ("4_1", ["seed=1"]),
    ]
    fake_squeue({"4_0": ("PENDING", "N/A"), "4_1": ("COMPLETED", "t")})
    queued, _ = slurm.alive(records)
    assert [r["task"] for r in queued] == ["4_0"]


def test_a_requeue_exit_leaves_the_run_running_and_resumable(tmp_path, monkeypatch):
    """submitit requeues a timed-out task, then exits it with sys.exit(-1) from the signal
    handler, in the middle of an epoch: the run folder must not say "failed"."""
    from helpers import FAST, TINY_MODELS, resolved

    from agr_suite.engine import train
    from agr_suite.registry import build_task

    cfg = resolved([*FAST, "trainer.epochs=3", "model=vit", *TINY_MODELS["vit"]])
    calls = {"n": 0}

    def build_with_a_requeue(cfg):
        parts = build_task(cfg)
        real_loss = parts.loss

        def loss(model, batch):
            calls["n"] += 1
            if calls["n"] == 4:  # epoch 2, second batch
                raise SystemExit(-1)
            return real_loss(model, batch)

        parts.loss = loss
        return parts

    with pytest.raises(SystemExit):
        train(cfg, tmp_path, build_with_a_requeue)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "running" and results["error"] is None
    assert results["epochs_completed"] == 1
    assert train(cfg, tmp_path, build_task)["status"] == "completed"  # and it resumes


SPEC = """
title: Tiny
seeds: [0, 1]
metrics:
  - {key: top1, label: Top-1 (%), select: final}
columns:
  - {name: AdamW, overrides: [optimizer=adamw]}
scales:
  mini:
    runs_subdir: mini
    overrides: [experiment_name=tiny, dataset=digits, model=vit]
    rows:
      - {name: digits / ViT, overrides: []}
"""


def test_reproduce_does_not_submit_runs_that_are_still_queued(tmp_path, fake_squeue, monkeypatch):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    args = [str(spec), "--scale", "mini", "--runs-dir", str(tmp_path / "runs")]
    args += ["--results-dir", str(tmp_path / "results")]
    launched = []
    monkeypatch.setattr(
        start_runs, "in_multirun", lambda pending, *a: launched.append(pending) or 0
    )
    plan = launch_reproduce.plan(reproduce.parse_args(args))
    ((spec_, planned),) = plan
    # An earlier launch submitted seed 0 as task 4_0: the multirun's own override first.
    registry = tmp_path / "runs" / "mini" / "tiny" / ".submitit" / "submitted.jsonl"
    seed0 = next(run for run in planned if run.seed == 0)
    slurm.record_submission(registry, [("4_0", ["launcher=slurm", *seed0.overrides])], "x", 1)

    fake_squeue({"4_0": ("PENDING", "N/A")})
    assert reproduce.main([*args, "--dry-run"]) == 0
    assert reproduce.main([*args, "--launcher", "slurm"]) == 0
    (slurm_launch,) = launched  # the Slurm launcher gets both; it waits for 4_0
    assert sorted(run.seed for run in slurm_launch) == [0, 1]
    launched.clear()
    assert reproduce.main([*args, "--launcher", "local"]) == 0
    (local_launch,) = launched  # a local launch leaves the queued run to Slurm
    assert [run.seed for run in local_launch] == [1]

    fake_squeue({"4_0": ("CANCELLED", "t")})  # no longer queued: submitted again
    launched.clear()
    assert reproduce.main([*args, "--launcher", "local"]) == 0
    assert sorted(run.seed for run in launched[0]) == [0, 1]


def test_reproduce_dry_run_shows_queued_runs(tmp_path, fake_squeue, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    args = [str(spec), "--scale", "mini", "--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    ((_, planned),) = launch_reproduce.plan(reproduce.parse_args(args))
    registry = tmp_path / "runs" / "mini" / "tiny" / ".submitit" / "submitted.jsonl"
    seed1 = next(run for run in planned if run.seed == 1)
    slurm.record_submission(registry, [("8_1", ["launcher=slurm", *seed1.overrides])], "x", 1)
    fake_squeue({"8_1": ("RUNNING", "t")})
    assert reproduce.main(args) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines() if "  -> " in line}
    assert lines == {"seed=0": "missing", "seed=1": "queued"}
    assert "1 to run" in out
    assert json.loads(registry.read_text())["task"] == "8_1"


def test_the_docs_show_the_site_file_and_arguments_the_slurm_tests_use():
    from helpers import SLURM_BASE, SLURM_EPOCHS
    from slurm_cluster import SITE_CONFIG

    readme = (ROOT / "docs" / "slurm.md").read_text()
    assert f"```yaml\n{SITE_CONFIG}```" in readme
    assert f'ARGS="{" ".join(SLURM_BASE)}"' in readme
    assert f"seed=0,1 $ARGS trainer.epochs={SLURM_EPOCHS} experiment_name=sweep" in readme


def test_the_slurm_launcher_waits_for_queued_runs_submits_the_others_and_fails_lost_tasks(
    tmp_path, fake_squeue, monkeypatch, caplog
):
    """hydra_plugins/agr_slurm without a cluster: a stand-in executor "submits" the runs
    that are not queued as array 6, whose result files the test writes as Slurm tasks
    would. The run still queued from an earlier launch (task 4_0) is waited for, not
    submitted; a task that ends without a result fails its run, the others return theirs."""
    import functools
    import logging

    import submitit
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf
    from submitit.core.utils import cloudpickle_dump

    from hydra_plugins.agr_slurm import SubmititSlurmLauncher

    folder = tmp_path / ".submitit" / "%j"
    runs = [["seed=0"], ["seed=1"], ["seed=2"]]

    def finish(job_id: str, overrides: list[str]) -> None:
        done = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=1.0)
        path = submitit.SlurmJob(folder=folder, job_id=job_id).paths.result_pickle
        path.parent.mkdir(parents=True, exist_ok=True)
        cloudpickle_dump(("success", done), path)

    registry = slurm.registry_path(folder)
    slurm.record_submission(registry, [("4_0", runs[0])], str(folder), 1)
    finish("4_0", runs[0])
    submitted = []

    class Executor:
        def map_array(self, function, overrides, *rest):
            submitted.extend(overrides)
            finish("6_0", overrides[0])  # 6_1 never writes one: cancelled
            return [submitit.SlurmJob(folder=folder, job_id=f"6_{i}") for i in range(2)]

    fake_squeue({"4_0": ("RUNNING", "t"), "6_0": ("COMPLETED", "t"), "6_1": ("CANCELLED", "t")})
    fast = functools.partial(slurm.SweepWatcher, poll_s=0.01, squeue_s=(0.01, 0.01), grace_s=0.1)
    monkeypatch.setattr(slurm, "SweepWatcher", fast)
    launcher = SubmititSlurmLauncher(submitit_folder=str(folder), nodes=1, tasks_per_node=1)
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    launcher._executor = Executor
    with caplog.at_level(logging.INFO):
        returns = launcher.launch(runs, initial_job_idx=0)

    assert submitted == runs[1:]  # the queued run is not submitted again
    assert [json.loads(line)["task"] for line in registry.read_text().splitlines()] == [
        "4_0",
        "6_0",
        "6_1",
    ]
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 2 + [JobStatus.FAILED]
    assert returns[2].overrides == runs[2]
    assert "slurm task 6_1 ended (CANCELLED) without a result" in str(returns[2]._return_value)
    assert "1 of these runs are still queued or running in slurm job 4" in caplog.text
    assert "submitted 2 runs as slurm job 6" in caplog.text
    assert "3 runs submitted, 0 pending, 0 running, 2 finished, 1 failed" in caplog.text
