"""Machine truth: every results.json says what computed it (CPU model and the kernels'
instruction set, GPUs, driver, CUDA, precision, TF32, determinism, versions), and a table
lists the machines and precisions behind it and flags a cell whose runs mix them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import FAST, TINY_MODELS, resolved

from agr_suite.engine import train
from agr_suite.engine.machine import machine_label
from agr_suite.registry import build_task
from agr_suite.report.markdown import render_markdown
from agr_suite.report.spec import load_spec, plan_runs
from agr_suite.report.tables import aggregate

TINY = [*FAST, "trainer.epochs=1", "model=vit", *TINY_MODELS["vit"]]


def _cpuinfo_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no model name in /proc/cpuinfo")


def test_results_json_records_the_machine_and_the_numerics(tmp_path):
    results = train(resolved(TINY), tmp_path / "run", build_task)
    env = results["environment"]
    assert env["cpu_model"] == _cpuinfo_model()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["onednn_isa"] and "AVX" in env["onednn_isa"]  # an x86-64 machine's oneDNN
    assert env["precision"] == "fp32" and env["autocast_dtype"] is None  # CPU: no autocast
    assert env["deterministic_algorithms"] is False
    assert env["gpus"] == [] and env["cuda"] is None and env["gpu_driver"] is None
    assert env["versions"]["torch"] == torch.__version__
    assert env["versions"]["timm"] and env["versions"]["torch-agr"]
    assert results["machines"] == [{"machine": env["machine"], "precision": "fp32"}]
    assert env["cpu_model"] in env["machine"] and env["cpu_capability"] in env["machine"]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["environment"] == env


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_capped_kernels_are_recorded_as_capped():
    """oneDNN and ATen capped at AVX2 (the portable CPU mode) say so (a fresh process: the
    caps are read when the libraries load)."""
    code = (
        "import json, torch; from agr_suite.engine.machine import environment;"
        "print(json.dumps(environment(torch.device('cpu'))))"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    recorded = json.loads(out.stdout.strip().splitlines()[-1])
    assert recorded["cpu_capability"] == "AVX2"
    assert recorded["onednn_isa"] == "Intel AVX2"
    assert recorded["isa_caps"] == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }  # no MKL cap set


def test_a_run_written_before_the_machine_fields_is_labelled_by_what_it_recorded():
    assert machine_label({"device": "x86_64"}) == "x86_64 (CPU model not recorded)"
    assert machine_label({"gpus": ["NVIDIA H200"] * 2}) == "2x NVIDIA H200"


SPEC = """
title: Mixed machines
seeds: [0, 1]
metrics:
  - {key: top1, label: Top-1 (%), select: final, higher_is_better: true, decimals: 1}
columns:
  - {name: AdamW, overrides: [optimizer=adamw]}
  - {name: AdamW(AGR), overrides: [optimizer=adamw_agr]}
baseline: AdamW
scales:
  paper:
    overrides: [experiment_name=mixed, dataset=digits]
    rows:
      - name: ResNet-18
        overrides: [model=resnet18]
"""


def _write(folder: Path, top1: float, machine: str, precision: str) -> None:
    folder.mkdir(parents=True)
    results = {
        "status": "completed",
        "seed": int(folder.name.removeprefix("seed")),
        "metrics": {"top1": top1},
        "environment": {"machine": machine, "precision": precision},
        "machines": [{"machine": machine, "precision": precision}],
    }
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "history.jsonl").write_text("")


def test_a_table_lists_its_machines_and_flags_the_cell_that_mixes_precisions(tmp_path):
    spec_file = tmp_path / "mixed.yaml"
    spec_file.write_text(SPEC)
    runs = tmp_path / "runs" / "mixed"
    h200 = "1x NVIDIA H200"
    _write(runs / "digits-resnet18-adamw" / "seed0", 60.0, h200, "bf16")
    _write(runs / "digits-resnet18-adamw" / "seed1", 61.0, h200, "bf16")
    _write(runs / "digits-resnet18-adamw_agr" / "seed0", 62.0, h200, "bf16")
    _write(runs / "digits-resnet18-adamw_agr" / "seed1", 63.0, h200, "fp32+tf32")
    spec = load_spec(str(spec_file))
    text = render_markdown(aggregate(spec, plan_runs(spec, tmp_path / "runs")))
    assert "- 1x NVIDIA H200, bf16: 3 runs" in text
    assert "- 1x NVIDIA H200, fp32+tf32: 1 run" in text
    assert "60.5 ± 0.7 (2) |" in text  # the AdamW cell: one precision, no flag
    assert "62.5 ± 0.7 (2; 2 machines or precisions mixed)" in text
    assert "mix machine types or precisions" in text and "ResNet-18 / AdamW(AGR)" in text
    assert "ResNet-18 / AdamW;" not in text and "ResNet-18 / AdamW." not in text


def test_a_run_resumed_on_another_machine_lists_both(tmp_path):
    folder = tmp_path / "run"
    first = train(resolved(TINY), folder, build_task)
    last = folder / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    elsewhere = {"machine": "1x NVIDIA H200", "precision": "bf16"}
    assert state["machines"] == first["machines"]
    torch.save({**state, "machines": [elsewhere]}, last)  # as if epoch 1 ran on a GPU
    resumed = train(resolved([*TINY, "trainer.epochs=2"]), folder, build_task)
    assert resumed["machines"] == [elsewhere, *first["machines"]]
