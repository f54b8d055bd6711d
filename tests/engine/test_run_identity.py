"""A run folder identifies its result: every setting that can change a run's numbers is in
the folder's name (a hash) or checked against the folder's recorded config before the folder
is skipped or resumed (agr_suite.core.run_identity)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers import FAST, RUN_PY_RUNNERS, TINY_MODELS, run_folder_of, tree_digest

from agr_suite.core import config
from agr_suite.diffusion.config import DiffusionProcessConfig, GenerationMetricsConfig

TINY = [*FAST, "trainer.epochs=1", "model=vit", *TINY_MODELS["vit"]]

# The settings that cannot change a number on a given machine, listed by hand: a field added
# to the schema is a result key unless it is added here too, after thought.
NOT_RESULT_KEYS = {
    "experiment_name",
    "overwrite",
    "folder_hash",
    "trainer.log_every",
    "dataset.download",
    "logger.name",
    "logger.project",
    "logger.entity",
    "logger.group",
    "logger.run_name",
    "logger.mode",
    "logger.dir",
    "logger.tags",
    "paths.data_dir",
    "paths.runs",
    "metrics.inception_weights",
    "metrics.grid_size",
}


def test_the_settings_that_cannot_change_a_number_are_exactly_the_listed_ones():
    schemas = [config.RunConfig, config.TrainerConfig, config.OptimizerConfig]
    schemas += [config.LoggerConfig, config.PathsConfig, GenerationMetricsConfig]
    schemas += [s for kinds in config.SCHEMAS.values() for s in kinds.values()]
    schemas += [DiffusionProcessConfig]
    prefixes = {
        DiffusionProcessConfig: "model.diffusion.",
        config.TrainerConfig: "trainer.",
        config.OptimizerConfig: "optimizer.",
        config.LoggerConfig: "logger.",
        config.PathsConfig: "paths.",
        GenerationMetricsConfig: "metrics.",
        config.SchedulerConfig: "scheduler.",
    }
    for kind in config.SCHEMAS["dataset"].values():
        prefixes[kind] = "dataset."
    for kind in config.SCHEMAS["model"].values():
        prefixes[kind] = "model."
    not_result = set()
    for schema in schemas:
        for f in dataclasses.fields(schema):
            if not f.metadata.get("result", True):
                not_result.add(prefixes.get(schema, "") + f.name)
    assert not_result == NOT_RESULT_KEYS


def folder(*overrides: str, runs: str = "/runs") -> str:
    return str(run_folder_of([*TINY, f"paths.runs={runs}", *overrides]))


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=3e-3",
        "optimizer=adamw",
        "trainer.epochs=2",
        "trainer.eval_batch_size=7",  # another batch shape rounds differently
        "trainer.num_workers=2",  # the torch loader's workers draw the augmentations
        "trainer.cpu_threads=1",
        "dataset.loader=device",
        "model.depth=2",
        "scheduler=cosine",
    ],
)
def test_a_setting_that_can_change_the_numbers_gives_another_folder(override):
    base = folder()
    other = folder(override)
    assert other != base
    assert other.rsplit("/", 2)[1].startswith("digits-vit-")  # still a readable name
    assert other.endswith("/seed0")


@pytest.mark.parametrize(
    "override",
    [
        "trainer.log_every=7",
        "logger=wandb",
        "logger.tags=[a]",
        "paths.data_dir=/elsewhere",
        "dataset.download=false",
        "overwrite=true",
    ],
)
def test_a_setting_that_cannot_change_the_numbers_keeps_the_folder(override):
    assert folder(override) == folder()


def test_the_seed_is_the_last_level_and_folder_hash_false_drops_the_hash():
    seeds = [folder(f"seed={s}") for s in (0, 1)]
    assert seeds[0].rsplit("/", 1)[0] == seeds[1].rsplit("/", 1)[0]
    assert seeds[1].endswith("/seed1")
    assert folder("folder_hash=false") == "/runs/default/digits-vit-adamw_agr/seed0"


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_a_sweep_over_a_result_key_gives_one_folder_per_run(tmp_path, run):
    """The issue's lr sweep: two runs, two folders (before, the second one skipped)."""
    args = ["-m", *TINY, f"paths.runs={tmp_path}", "optimizer.lr=1e-3,3e-3"]
    result = run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already completed" not in result.stdout
    done = sorted((tmp_path / "default").glob("*/seed0/results.json"))
    assert len(done) == 2
    assert {json.loads(p.read_text())["status"] for p in done} == {"completed"}
    recorded = sorted(config.read_run_config(p.with_name("config.yaml")).optimizer.lr for p in done)
    assert recorded == [1e-3, 3e-3]


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_another_result_key_in_a_folder_stops_with_exit_2_naming_it(tmp_path, run):
    """Readable folders (folder_hash=false) are shared by configs that differ: run.py
    compares the recorded config, and a result key that differs stops it before it skips
    or resumes; a non-result key does not; overwrite=true replaces the old run."""
    args = [*TINY, f"paths.runs={tmp_path}", "folder_hash=false"]
    assert run(args, tmp_path).returncode == 0
    where = tmp_path / "default" / "digits-vit-adamw_agr" / "seed0"
    before = tree_digest(where)

    changed = run([*args, "optimizer.lr=3e-3", "trainer.num_workers=1"], tmp_path)
    assert changed.returncode == 2
    assert "Traceback" not in changed.stderr + changed.stdout
    assert "optimizer.lr: 0.001 -> 0.003" in changed.stderr
    assert "trainer.num_workers: 0 -> 1" in changed.stderr
    assert str(where) in changed.stderr and "overwrite=true" in changed.stderr
    assert tree_digest(where) == before  # nothing of the finished run touched

    # An interrupted run (results.json says running; its last checkpoint is epoch 1's)
    # resumes under a setting that cannot change its numbers.
    results = json.loads((where / "results.json").read_text())
    (where / "results.json").write_text(json.dumps({**results, "status": "running"}))
    resumed = run([*args, "trainer.log_every=3", "trainer.epochs=1"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed after epoch 1" in resumed.stdout
    assert json.loads((where / "results.json").read_text())["status"] == "completed"

    replaced = run([*args, "optimizer.lr=3e-3", "overwrite=true"], tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    (old,) = where.parent.glob("seed0.replaced-*")
    assert config.read_run_config(old / "config.yaml").optimizer.lr == 1e-3
    assert config.read_run_config(where / "config.yaml").optimizer.lr == 3e-3
