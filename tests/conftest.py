"""Test-wide settings: nothing reaches a hub, W&B is off, and results are deterministic."""

import os

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
}.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A Slurm test is never skipped (`make test-slurm` must not pass by doing nothing): a
    skip there is reported as a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("slurm") is not None:
        report.outcome = "failed"
        report.longrepr = f"a Slurm test may not be skipped: {report.longrepr}"
