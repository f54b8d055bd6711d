"""Bad input is a message and exit code 2, from one place (core/errors.py), before any work and
without touching an earlier run: a run folder that cannot be written, a GPU the machine does
not have, optimizer options the optimizer refuses. (W&B without a key:
tests/engine/test_wandb.py.)"""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers import (
    FAST,
    TINY_MODELS,
    resolved,
    run_cli,
    run_folder_of,
    run_in_process,
    tree_digest,
)

from agr.optim import FAMILIES
from agr_suite.core.config import ConfigError, validate
from agr_suite.core.errors import DatasetMissingError, UserError
from agr_suite.diffusion.metrics import InceptionWeightsMissingError
from agr_suite.engine import CheckpointError, train
from agr_suite.registry import build_task

TINY = [*FAST, "trainer.epochs=1", "model=vit", *TINY_MODELS["vit"]]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A runs folder holding one completed run of TINY (the folder the CLI cases point at)."""
    runs = tmp_path_factory.mktemp("finished") / "runs"
    results = train(resolved(TINY), run_folder_of([*TINY, f"paths.runs={runs}"]), build_task)
    assert results["status"] == "completed"
    return runs


def _bad_inputs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    cases = {
        "unwritable runs": (
            ["paths.runs=/proc/forbidden"],
            [
                "paths.runs=/proc/forbidden: cannot write the run folder "
                f"{run_folder_of([*TINY, 'paths.runs=/proc/forbidden'])}",
                "cannot create a folder in /proc",
            ],
        ),
        "runs under a file": (
            [f"paths.runs={a_file / 'runs'}"],
            [f"paths.runs={a_file / 'runs'}", f"{a_file} is a file, not a folder"],
        ),
        "one beta": (
            ["optimizer.betas=[0.9]"],
            ["optimizer.betas=[0.9]: adamw_agr takes 2 betas, got 1"],
        ),
    }
    cases["unknown choice"] = (
        ["optimizer=adamw_agrr"],
        ["Could not find 'optimizer/adamw_agrr'", "adamw_agr", "python run.py --help"],
    )
    cases["unknown key"] = (["optimizer.momentun=0.9"], ["Could not override 'optimizer.momentun'"])
    cases["bad override"] = (["seed=1=2"], ["override_grammar"])
    if not torch.cuda.is_available():
        cases["no GPU"] = (
            ["trainer.devices=cuda"],
            ["trainer.devices=cuda, but this machine has no GPU", "trainer.devices=cpu"],
        )
    return cases


CASES = [
    "unwritable runs",
    "runs under a file",
    "one beta",
    "no GPU",
    "unknown choice",
    "unknown key",
    "bad override",
]


# Every case through run.py's own functions in this process (make test); through a real
# `python run.py` too: one case in make test (refused before Hydra runs), every case in
# make test-all.
CLI_IN_MAKE_TEST = ("unknown choice",)
RUNS = [pytest.param(case, run_in_process, id=f"{case}-in-process") for case in CASES] + [
    pytest.param(
        case, run_cli, id=f"{case}-cli", marks=() if case in CLI_IN_MAKE_TEST else pytest.mark.slow
    )
    for case in CASES
]


@pytest.mark.parametrize("case, run", RUNS)
def test_bad_input_exits_2_with_the_key_and_why_and_touches_no_run(
    tmp_path, finished_runs, case, run
):
    cases = _bad_inputs(tmp_path)
    if case not in cases:
        pytest.skip("this machine has a GPU")
    overrides, expected = cases[case]
    before = tree_digest(finished_runs)
    # overwrite=true: a run that went ahead would first move the finished run aside.
    args = [*TINY, f"paths.runs={finished_runs}", "overwrite=true", *overrides]
    result = run(args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    for text in expected:
        assert text in result.stderr
    assert tree_digest(finished_runs) == before
    assert not list(finished_runs.rglob("*.replaced-*"))


def test_every_user_error_is_a_user_error_and_keeps_its_builtin_kind():
    for error, builtin in [
        (ConfigError, ValueError),
        (CheckpointError, RuntimeError),
        (DatasetMissingError, FileNotFoundError),
        (InceptionWeightsMissingError, FileNotFoundError),
    ]:
        assert issubclass(error, UserError) and issubclass(error, builtin)


def test_each_family_record_takes_what_its_class_takes():
    """Against the classes' own signatures (torch's AdamW and SGD, timm's Adan): the record's
    options are keyword arguments of the class, and its betas as many as the class's."""
    for family in FAMILIES.values():
        signature = inspect.signature(family.load().__init__).parameters
        assert set(family.defaults) <= set(signature)
        if "betas" in family.defaults:
            assert len(family.defaults["betas"]) == len(signature["betas"].default)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimizer=adan", "optimizer.betas=[0.9,0.99]"], "adan takes 3 betas, got 2"),
        (
            ["optimizer=adan_agr", "optimizer.impl=fused"],
            "optimizer.impl='fused': adan_agr: impl='fused' is not valid",
        ),
        (["logger=wandb", "logger.mode=onlin"], "logger.mode='onlin'"),
        (["trainer.divergence_factor=1"], "trainer.divergence_factor=1"),
    ],
)
def test_options_the_run_would_refuse_later_are_config_errors_now(overrides, message):
    with pytest.raises(ConfigError) as caught:
        validate(resolved(overrides))
    assert message in str(caught.value)
