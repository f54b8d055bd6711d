"""Seed sweeps on a real Slurm (``make test-slurm``; marker ``slurm``, not in ``make test``).

A single-node cluster (tests/slurm_cluster.py: munged, slurmctld and slurmd started for
this module, stopped after it) runs the sweeps as a user runs them: from a checkout with a
site file (``configs/local/slurm.yaml`` naming the local partition), through ``run.py -m
launcher=slurm`` and ``scripts/reproduce.py --launcher slurm``. Each result is checked
against an independent reference: the same runs with ``launcher=local``, an uninterrupted
run, a torchrun DDP run, and Slurm's own view of the jobs (squeue, scontrol).

The tiny budgets keep the module at a few minutes on 2 busy cores. The AGR CPU kernel is
switched off (``AGR_CPU_KERNEL=0``, torch ops) in every run here, local and Slurm alike: the
checkout lives in a temporary folder, where the kernel would be compiled afresh each time.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import SLURM_BASE, SLURM_EPOCHS, run_folder_of
from slurm_cluster import LocalSlurm, SlurmHarnessError, ensure_packages, free_ports

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT_EPOCHS = 100  # about a minute: longer than a 1-minute limit's warning signal


def run_dir(experiment: Path, *overrides: str) -> Path:
    """The folder of SLURM_BASE + ``overrides`` under ``experiment`` (runs/<experiment_name>),
    that holds its seed<N> folders: digits-vit-adamw_agr-<config hash>."""
    where = [f"paths.runs={experiment.parent}", f"experiment_name={experiment.name}"]
    return run_folder_of([*SLURM_BASE, *overrides, *where]).parent


SWEEP = f"trainer.epochs={SLURM_EPOCHS}"  # the sweep and preemption runs' own override
# squeue's states of a job that has ended (squeue(1), JOB STATE CODES)
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL"}
ENDED |= {"OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}


# ------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def cluster():
    try:
        print(ensure_packages())
        slurm = LocalSlurm()
    except SlurmHarnessError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        slurm.start()
    except SlurmHarnessError as error:
        pytest.fail(str(error), pytrace=False)
    print(f"slurm cluster in {slurm.root}: {slurm.run(['sinfo']).stdout}")
    try:
        yield slurm
    finally:
        forced = slurm.stop()
        print(f"slurm cluster stopped (killed forcibly: {forced or 'nothing'})")
    assert not slurm.root.exists()
    assert all(process.poll() is not None for process in slurm.processes.values())
    assert slurm.leftover_processes() == []


@pytest.fixture(scope="module")
def checkout(cluster, tmp_path_factory):
    """This repository as a user has it, with a site file for the local partition (the
    tests never write into this repository's own configs/local/)."""
    root = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "local")
    for name in ("lib", "agr_suite", "configs", "tables", "hydra_plugins", "scripts"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    shutil.copy2(ROOT / "run.py", root / "run.py")
    (root / "configs" / "local").mkdir()
    (root / "configs" / "local" / "slurm.yaml").write_text(cluster.site_config())
    return root


def environment(cluster: LocalSlurm, checkout: Path) -> dict[str, str]:
    return {
        **cluster.env,
        # the checkout's agr, agr_suite and hydra_plugins, in jobs too
        "PYTHONPATH": f"{checkout / 'lib'}{os.pathsep}{checkout}",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "AGR_CPU_KERNEL": "0",
    }


def start(command: list[str], cluster, checkout, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    process = subprocess.Popen(
        command,
        cwd=checkout,
        env=environment(cluster, checkout),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return process


def finish(process: subprocess.Popen, log: Path, cluster, timeout: float = 600) -> str:
    """Wait for a command started with start(); its output, or a failure with the output,
    the jobs' logs and the daemons' log tails."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    output = log.read_text()
    if process.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, process.args))} -> {process.returncode}\n{output[-6000:]}\n"
            f"{job_logs(log.parent)}\n{cluster.log_tails()}",
            pytrace=False,
        )
    return output


def run(args: list[str], cluster, checkout, log: Path, timeout: float = 600) -> str:
    process = start([sys.executable, "run.py", *args], cluster, checkout, log)
    return finish(process, log, cluster, timeout)


def wait_until(condition, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Poll ``condition`` while ``process`` (started with start()) still runs."""
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None or time.time() > deadline:
            pytest.fail(f"gave up waiting ({process.returncode=}):\n{log.read_text()[-6000:]}")
        time.sleep(0.1)


def job_logs(folder: Path, lines: int = 40) -> str:
    parts = []
    for path in sorted(folder.rglob(".submitit/*/*_log.*")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {path} ---\n" + "\n".join(text))
    return "\n".join(parts)


def submitit_logs(runs: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(runs.rglob(".submitit/*/*_log.out")))


def slurm_tasks(cluster) -> dict[str, str]:
    """Every task Slurm knows (finished ones for MinJobAge, 300 s): task id -> state."""
    out = cluster.run(["squeue", "--noheader", "--array", "--states=all", "-o", "%i|%T"]).stdout
    return dict(line.split("|") for line in out.split())


def new_tasks(cluster, before: set[str], timeout: float = 60) -> dict[str, str]:
    """The tasks that are not in ``before``, once they have ended (a task's process may
    still be exiting when its result is written)."""
    deadline = time.time() + timeout
    while True:
        new = {t: s for t, s in slurm_tasks(cluster).items() if t not in before}
        if time.time() > deadline or all(s in ENDED for s in new.values()):
            return new
        time.sleep(0.5)


def restarts(cluster, task: str) -> int:
    shown = cluster.run(["scontrol", "show", "job", task]).stdout
    return int(re.search(r"Restarts=(\d+)", shown).group(1))


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


CLOCK = {"time_s", "epoch_time_s", "train_samples_per_s"}  # wall-clock readings


def trajectory(folder: Path) -> list[dict]:
    """history.jsonl without its wall-clock readings: every epoch's losses and metrics."""
    lines = (folder / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in CLOCK} for line in lines]


def epochs_logged(folder: Path) -> list[int]:
    return [record["epoch"] for record in trajectory(folder)]


# ------------------------------------------------------------------------- references


@pytest.fixture(scope="module")
def local_reference(cluster, checkout, tmp_path_factory):
    """The sweep of the first test with launcher=local: the numbers Slurm must give."""
    runs = tmp_path_factory.mktemp("local")
    args = ["-m", "launcher=local", "seed=0,1", *SLURM_BASE, f"trainer.epochs={SLURM_EPOCHS}"]
    run([*args, "experiment_name=sweep", f"paths.runs={runs}"], cluster, checkout, runs / "log")
    return run_dir(runs / "sweep", SWEEP)


# ------------------------------------------------------------------------- the tests


def test_a_sweep_whose_middle_run_diverges_runs_the_others_and_exits_1(cluster, checkout, tmp_path):
    """Three tasks of one array; the middle one's learning rate makes it diverge: the other
    two complete, and the sweep lists the failed run and exits 1 (not 0, not stuck)."""
    runs, log = tmp_path / "runs", tmp_path / "log"
    lrs = ("1e-3", "1e6", "2e-3")
    args = ["-m", "launcher=slurm", *SLURM_BASE, "trainer.epochs=1", "experiment_name=diverge"]
    process = start(
        [sys.executable, "run.py", *args, f"paths.runs={runs}", f"optimizer.lr={','.join(lrs)}"],
        cluster,
        checkout,
        log,
    )
    process.wait(timeout=600)
    output = log.read_text()
    assert process.returncode == 1, output[-6000:]
    assert "1 of 3 runs failed; the others ran:" in output, output[-6000:]
    folders = [run_dir(runs / "diverge", "trainer.epochs=1", f"optimizer.lr={lr}") for lr in lrs]
    states = [results(folder / "seed0")["status"] for folder in folders]
    assert states == ["completed", "failed", "completed"], output[-6000:]
    print(f"observed: {states}; the summary:\n{output[output.index('1 of 3 runs') :][:2000]}")


def test_a_seed_sweep_is_one_array_job_with_the_local_runs_numbers(
    cluster, checkout, local_reference, tmp_path
):
    before = set(slurm_tasks(cluster))
    runs = tmp_path / "runs"
    args = ["-m", "launcher=slurm", "seed=0,1", *SLURM_BASE, f"trainer.epochs={SLURM_EPOCHS}"]
    output = run(
        [*args, "experiment_name=sweep", f"paths.runs={runs}"], cluster, checkout, tmp_path / "log"
    )

    new = new_tasks(cluster, before)
    arrays = {task.split("_")[0] for task in new}
    assert len(arrays) == 1, new  # one array job ...
    (array,) = arrays
    assert new == {f"{array}_0": "COMPLETED", f"{array}_1": "COMPLETED"}, new  # ... two tasks
    for seed in (0, 1):
        slurm_run = run_dir(runs / "sweep", SWEEP) / f"seed{seed}"
        local_run = local_reference / f"seed{seed}"
        assert sorted(p.name for p in slurm_run.iterdir()) == sorted(
            p.name for p in local_run.iterdir()
        )
        assert results(slurm_run)["status"] == "completed"
        assert results(slurm_run)["metrics"] == results(local_run)["metrics"]
        assert trajectory(slurm_run) == trajectory(local_run)
        assert epochs_logged(slurm_run) == list(range(1, SLURM_EPOCHS + 1))
    # Readable without accounting: the suite's own progress, no sacct warnings.
    assert "sacct" not in output
    assert f"submitted 2 runs as slurm job {array}" in output
    assert f"slurm job {array}: 2 runs submitted, 0 pending, 0 running, 2 finished, 0 failed" in (
        output
    )
    folder = run_dir(runs / "sweep", SWEEP)
    top1 = [results(folder / f"seed{seed}")["metrics"]["top1"] for seed in (0, 1)]
    print(f"observed: array job {array}, tasks {sorted(new)} COMPLETED; top1 {top1} = local")
    print(output)


def test_a_preempted_task_is_requeued_and_resumes_exactly(
    cluster, checkout, local_reference, tmp_path
):
    runs = tmp_path / "runs"
    folder = run_dir(runs / "sweep", SWEEP) / "seed0"
    args = ["-m", "launcher=slurm", "seed=0", *SLURM_BASE, f"trainer.epochs={SLURM_EPOCHS}"]
    log = tmp_path / "log"
    before = set(slurm_tasks(cluster))
    sweep = start(
        [sys.executable, "run.py", *args, "experiment_name=sweep", f"paths.runs={runs}"],
        cluster,
        checkout,
        log,
    )
    wait_until((folder / "checkpoints" / "last.pt").exists, sweep, log)
    (task,) = [t for t in slurm_tasks(cluster) if t not in before]
    cluster.run(["scontrol", "requeue", task])
    cut_at = len(epochs_logged(folder))
    output = finish(sweep, log, cluster)

    assert restarts(cluster, task) == 1  # Slurm's own count
    assert "requeued: " in output and f"(slurm task {task})" in output
    logs = submitit_logs(runs)
    assert len(re.findall(r"submitit INFO .* Starting with JobEnvironment", logs)) == 2
    (resumed,) = re.findall(r"resumed after epoch (\d+)", logs)
    assert cut_at <= int(resumed) < SLURM_EPOCHS  # it came back from a checkpoint, mid-run
    assert results(folder)["status"] == "completed"
    assert epochs_logged(folder) == list(range(1, SLURM_EPOCHS + 1))
    reference = local_reference / "seed0"
    assert results(folder)["metrics"] == results(reference)["metrics"]
    assert trajectory(folder) == trajectory(reference)
    print(
        f"observed: scontrol requeue {task} after epoch {cut_at}; Restarts=1; resumed after "
        f"epoch {resumed}; metrics {results(folder)['metrics']} = uninterrupted local run"
    )
    print(output)


def test_a_cancelled_sweep_ends_and_the_same_command_resumes_it(
    cluster, checkout, local_reference, tmp_path
):
    """The README's cancel and resume: `scancel <job>` ends the waiting sweep with the runs
    failed (not a sweep that waits forever for results that never come); the same command
    again submits them anew and they resume from their checkpoints."""
    runs = tmp_path / "runs"
    folders = [run_dir(runs / "sweep", SWEEP) / f"seed{seed}" for seed in (0, 1)]
    command = [sys.executable, "run.py", "-m", "launcher=slurm", "seed=0,1", *SLURM_BASE]
    command += [f"trainer.epochs={SLURM_EPOCHS}", "experiment_name=sweep", f"paths.runs={runs}"]
    before = set(slurm_tasks(cluster))
    log = tmp_path / "cancelled.log"
    sweep = start(command, cluster, checkout, log)
    wait_until(lambda: all((f / "checkpoints" / "last.pt").exists() for f in folders), sweep, log)
    (array,) = {task.split("_")[0] for task in slurm_tasks(cluster) if task not in before}
    cluster.run(["scancel", array])
    cancelled_at = time.time()
    try:
        sweep.wait(timeout=120)
    except subprocess.TimeoutExpired:
        sweep.kill()
        pytest.fail(f"the sweep still waits 120 s after scancel:\n{log.read_text()[-4000:]}")
    waited = time.time() - cancelled_at
    output = log.read_text()
    assert sweep.returncode != 0, output
    assert new_tasks(cluster, before) == {f"{array}_0": "CANCELLED", f"{array}_1": "CANCELLED"}
    assert f"slurm job {array}: 2 runs submitted, 0 pending, 0 running, 0 finished, 2 failed" in (
        output
    )
    failed = re.findall(r"run failed: .*seed=(\d).* ended \(CANCELLED\) without a result", output)
    assert sorted(failed) == ["0", "1"]
    cut = [len(epochs_logged(folder)) for folder in folders]
    assert all(0 < epochs < SLURM_EPOCHS for epochs in cut), cut

    before = set(slurm_tasks(cluster))
    again = run(command[2:], cluster, checkout, tmp_path / "again.log")  # the same command
    (second,) = {task.split("_")[0] for task in new_tasks(cluster, before)}
    assert second != array
    resumed = re.findall(r"resumed after epoch (\d+)", submitit_logs(runs))
    assert sorted(int(e) for e in resumed) == sorted(cut)
    for seed, folder in enumerate(folders):
        reference = local_reference / f"seed{seed}"
        assert results(folder)["status"] == "completed"
        assert results(folder)["metrics"] == results(reference)["metrics"]
        assert trajectory(folder) == trajectory(reference)
    print(
        f"observed: scancel {array} after epochs {cut}; the sweep ended {waited:.0f}s later "
        f"with 2 failed; the same command again: job {second}, resumed after epochs "
        f"{resumed}, metrics equal to launcher=local"
    )
    print(again)


def test_a_task_past_its_time_limit_is_requeued_and_completes(cluster, checkout, tmp_path):
    """A 1-minute limit: Slurm warns the task (USR2) 10 s before it, give or take its 30 s
    check interval, so 20-50 s after the start; submitit's handler sees a time-out and
    requeues the task, up to max_num_timeout times (5 in configs/launcher/slurm.yaml). The
    run needs about a minute, so its first attempt always runs out of time. To bound this
    test, the requeued task then gets a 30-minute limit and completes in its second attempt
    (a run that keeps timing out just takes more attempts)."""
    args = [*SLURM_BASE, f"trainer.epochs={TIME_LIMIT_EPOCHS}", "experiment_name=limit"]
    # The uninterrupted reference, on the node's other core meanwhile.
    local_log = tmp_path / "local.log"
    reference = start(
        [sys.executable, "run.py", *args, f"paths.runs={tmp_path / 'local'}"],
        cluster,
        checkout,
        local_log,
    )
    before = set(slurm_tasks(cluster))
    runs, log = tmp_path / "runs", tmp_path / "log"
    limit = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10"]
    sweep = start(
        [
            sys.executable,
            "run.py",
            "-m",
            "launcher=slurm",
            "seed=0",
            *args,
            *limit,
            f"paths.runs={runs}",
        ],
        cluster,
        checkout,
        log,
    )
    wait_until(lambda: "Requeued job" in submitit_logs(runs), sweep, log)
    (task,) = [t for t in slurm_tasks(cluster) if t not in before]
    cluster.run(["scontrol", "update", f"JobId={task}", "TimeLimit=30"])
    folder = run_dir(runs / "limit", f"trainer.epochs={TIME_LIMIT_EPOCHS}") / "seed0"
    wait_until(lambda: slurm_tasks(cluster)[task] == "PENDING", sweep, log)
    waiting = results(folder)  # between two attempts: not over, so not "failed"
    assert waiting["status"] == "running" and 0 < waiting["epochs_completed"] < TIME_LIMIT_EPOCHS
    output = finish(sweep, log, cluster)
    finish(reference, local_log, cluster)

    logs = submitit_logs(runs)
    timed_out = re.findall(r"submitit WARNING .* this job is (timed-out|preempted)", logs)
    assert timed_out == ["timed-out"]
    requeued = re.findall(r"submitit INFO .* Requeued job (\S+) \((\d+) remaining timeouts", logs)
    assert requeued == [(task, "4")]  # max_num_timeout 5, one used
    (resumed,) = [int(e) for e in re.findall(r"resumed after epoch (\d+)", logs)]
    assert 0 < resumed < TIME_LIMIT_EPOCHS  # cut short mid-run, resumed from its checkpoint
    assert new_tasks(cluster, before) == {task: "COMPLETED"}
    assert restarts(cluster, task) == 1  # Slurm's own count
    local = run_dir(tmp_path / "local" / "limit", f"trainer.epochs={TIME_LIMIT_EPOCHS}") / "seed0"
    assert results(folder)["status"] == "completed"
    assert epochs_logged(folder) == list(range(1, TIME_LIMIT_EPOCHS + 1))
    assert results(folder)["metrics"] == results(local)["metrics"]
    assert trajectory(folder) == trajectory(local)
    print(f"observed: task {task} timed out after epoch {resumed}, requeued once, completed")
    print(output)


TINY_SPEC = """
title: Tiny Slurm sweep
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
    overrides: [experiment_name=tiny, dataset=digits, trainer.devices=cpu,
                trainer.num_workers=0, trainer.epochs=3, trainer.batch_size=32,
                trainer.log_every=10, scheduler=constant]
    rows:
      - name: digits / ViT
        overrides: [model=vit, model.embed_dim=32, model.depth=1, model.num_heads=2]
"""


def test_reproduce_submits_one_array_and_a_second_call_does_not_resubmit(
    cluster, checkout, tmp_path
):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    command = [
        sys.executable,
        "scripts/reproduce.py",
        str(spec),
        "--scale",
        "mini",
        "--launcher",
        "slurm",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--results-dir",
        str(tmp_path / "results"),
    ]
    before = set(slurm_tasks(cluster))
    registry = tmp_path / "runs" / "mini" / "tiny" / ".submitit" / "submitted.jsonl"
    # The partition is down, so the array stays pending until both calls are waiting.
    cluster.run(["scontrol", "update", "PartitionName=agrtest", "State=DOWN"])
    try:
        first = start(command, cluster, checkout, tmp_path / "first.log")
        wait_until(registry.exists, first, tmp_path / "first.log")
        pending = {t: s for t, s in slurm_tasks(cluster).items() if t not in before}
        assert len(pending) == 2 and set(pending.values()) == {"PENDING"}, pending
        second = start(command, cluster, checkout, tmp_path / "second.log")
        attached = lambda: "not submitting them again" in (tmp_path / "second.log").read_text()
        wait_until(attached, second, tmp_path / "second.log")
    finally:
        cluster.run(["scontrol", "update", "PartitionName=agrtest", "State=UP"])
    second_out = finish(second, tmp_path / "second.log", cluster)
    first_out = finish(first, tmp_path / "first.log", cluster)

    new = new_tasks(cluster, before)
    assert set(new) == set(pending) and set(new.values()) == {"COMPLETED"}  # one array, once
    assert [json.loads(line)["task"] for line in registry.read_text().split("\n") if line] == (
        sorted(pending)
    )
    assert "2 runs of tiny are still queued or running in Slurm" in second_out
    assert "launching 2 runs" in first_out
    folders = [
        tmp_path / "runs" / "mini" / "tiny" / f"digits-vit-{o}" / "seed0"
        for o in ("adamw", "adamw_agr")
    ]
    for folder in folders:
        assert results(folder)["status"] == "completed"
        assert epochs_logged(folder) == [1, 2, 3]  # trained once
    table = (tmp_path / "results" / "mini" / "tiny.csv").read_text().splitlines()
    rows = list(csv.DictReader(table))
    assert [int(row["n"]) for row in rows] == [1, 1]
    for row, folder in zip(rows, folders):
        assert float(row["mean"]) == pytest.approx(results(folder)["metrics"]["top1"])
    for out in (first_out, second_out):
        assert "wrote " in out and "tiny.csv" in out
    print(
        f"observed: one array {sorted(new)} (pending when the second call came, both calls "
        f"waited for it); table n={[row['n'] for row in rows]}, top1 {[r['mean'] for r in rows]}"
    )
    print(first_out, second_out, sep="\n")


def test_ddp_in_a_slurm_allocation_matches_torchrun(cluster, checkout, tmp_path):
    """Two tasks of one Slurm job (gloo on CPU) train one run; it matches torchrun's."""
    args = [*SLURM_BASE, "trainer.epochs=2", "experiment_name=ddp"]
    runs = tmp_path / "runs"
    before = set(slurm_tasks(cluster))
    output = run(
        ["-m", "launcher=slurm", "seed=0", *args, f"paths.runs={runs}"]
        + ["hydra.launcher.tasks_per_node=2"],
        cluster,
        checkout,
        tmp_path / "log",
    )
    (job,) = new_tasks(cluster, before)
    shown = cluster.run(["scontrol", "show", "job", job]).stdout
    assert "NumTasks=2" in shown, shown  # one job, two tasks
    folders = list((runs / "ddp").glob("*/seed*"))
    assert folders == [run_dir(runs / "ddp", "trainer.epochs=2") / "seed0"]  # one for both ranks
    assert results(folders[0])["environment"]["world_size"] == 2
    (rank0,) = runs.rglob(".submitit/*/*_0_log.out")
    rank1 = [path.read_text() for path in runs.rglob(".submitit/*/*_1_log.*")]
    assert len(rank1) == 2 and "global_rank=1(2)" in rank1[0] + rank1[1]
    assert "epoch 2/2" in rank0.read_text() and "| device cpu x2" in rank0.read_text()
    for text in rank1:  # rank 0 logs, rank 1 trains quietly
        assert not re.search(r"^(run |epoch |\[)", text, re.MULTILINE), text

    # The same two-process run through torchrun, outside Slurm.
    (port,) = free_ports(1)
    torchrun = start(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        + ["--master_addr=127.0.0.1", f"--master_port={port}", "run.py", *args]
        + [f"paths.runs={tmp_path / 'torchrun'}"],
        cluster,
        checkout,
        tmp_path / "torchrun.log",
    )
    finish(torchrun, tmp_path / "torchrun.log", cluster)
    reference = run_dir(tmp_path / "torchrun" / "ddp", "trainer.epochs=2") / "seed0"
    assert results(reference)["environment"]["world_size"] == 2
    assert results(folders[0])["metrics"] == results(reference)["metrics"]
    assert trajectory(folders[0]) == trajectory(reference)
    print(
        f"observed: job {job} with NumTasks=2, one run folder, world size 2, rank-1 logs "
        f"without run output; metrics {results(reference)['metrics']} = torchrun's"
    )
    print(output)
