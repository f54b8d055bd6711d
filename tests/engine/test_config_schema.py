"""The typed schema is the only place a default is written: the YAML files under configs/
only choose and override, and every default passes its own check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import MISSING, OmegaConf

from agr_suite.core import config as schema
from agr_suite.images.config import ImageDatasetConfig
from agr_suite.pretraining.config import TextDatasetConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GROUPS = ("dataset", "model", "optimizer", "scheduler", "trainer", "logger", "paths", "metrics")


def _schema_of(group: str, raw: dict) -> type:
    """The dataclass a group's YAML file merges into: the kind its defaults list names
    (/agr_suite_schema/<group>/<kind>@_here_), else the group's one schema."""
    for entry in raw.get("defaults", []):
        if isinstance(entry, str) and entry.startswith(f"/{schema.SCHEMA}/{group}/"):
            return schema.SCHEMAS[group][entry.split("/")[3].split("@")[0]]
    (only,) = schema.SCHEMAS[group].values()
    return only


def _default(f: dataclasses.Field):
    """A field's default: a value, a nested schema instance, or MISSING."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return MISSING


def _restated(values: dict, dataclass: type, prefix: str) -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(dataclass)}
    found = []
    for key, value in values.items():
        if key == "defaults":
            continue
        assert key in fields, f"{prefix}{key} is not a field of {dataclass.__name__}"
        default = _default(fields[key])
        if dataclasses.is_dataclass(default):  # a nested section: compare field by field
            found += _restated(value, type(default), f"{prefix}{key}.")
        elif value == default:
            found.append(f"{prefix}{key}={value!r}")
    return found


@pytest.mark.parametrize("group", GROUPS)
def test_no_option_file_restates_a_schema_default(group):
    for path in sorted((CONFIGS / group).glob("*.yaml")):
        raw = OmegaConf.to_container(OmegaConf.load(path)) or {}
        restated = _restated(raw, _schema_of(group, raw), f"{group}.")
        assert not restated, f"{path.name} restates the schema's defaults: {restated}"


def _all_schemas():
    seen, queue = [], [schema.RunConfig, *[k for g in schema.SCHEMAS.values() for k in g.values()]]
    while queue:
        cls = queue.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
                if dataclasses.is_dataclass(value):
                    queue.append(type(value))
    return seen


def test_every_default_passes_its_own_check_and_every_check_says_what_it_wants():
    checked = 0
    for cls in _all_schemas():
        for f in dataclasses.fields(cls):
            check = f.metadata.get("check")
            if check is None:
                continue
            assert f.metadata["must_be"], f"{cls.__name__}.{f.name}: a check without its words"
            default = _default(f)
            if default is MISSING or (isinstance(default, str) and "${" in default):
                continue
            assert check(default), f"{cls.__name__}.{f.name}={default!r} fails its own check"
            checked += 1
    assert checked > 60


def test_the_checks_refuse_what_they_say_they_refuse():
    # spot checks against the words each check states
    fields = {f.name: f for f in dataclasses.fields(schema.TrainerConfig)}
    assert fields["epochs"].metadata["must_be"] == "an integer >= 1"
    assert not fields["epochs"].metadata["check"](0)
    assert not fields["epochs"].metadata["check"](True)  # a bool is not an integer
    assert fields["grad_clip"].metadata["check"](None)
    assert not fields["label_smoothing"].metadata["check"](1.0)  # [0, 1)
    text = {f.name: f for f in dataclasses.fields(TextDatasetConfig)}
    assert not text["mask_prob"].metadata["check"](0.0)  # (0, 1]
    assert text["mask_prob"].metadata["check"](1.0)
    image = {f.name: f for f in dataclasses.fields(ImageDatasetConfig)}
    assert image["rand_augment"].metadata["check"]("rand-m9-mstd0.5-inc1")
    assert image["rand_augment"].metadata["check"](None)
    assert not image["rand_augment"].metadata["check"]("rand-q9")  # timm refuses the section
    assert not image["rand_augment"].metadata["check"]("v0")  # AutoAugment, not RandAugment
    assert not image["mixup_mode"].metadata["check"]("pair2")
    assert not image["random_erasing"].metadata["check"](1.5)
    assert not fields["ema_decay"].metadata["check"](1.5)
    optimizer = {f.name: f for f in dataclasses.fields(schema.OptimizerConfig)}
    assert not optimizer["lr_scale_batch"].metadata["check"](0)


def test_the_recipe_settings_are_off_by_default():
    """The settings issue 22 added change nothing unless a preset sets them."""
    image, trainer = ImageDatasetConfig(name="x"), schema.TrainerConfig()
    assert (image.crop, image.rand_augment, image.random_erasing) == ("pad", None, 0.0)
    assert not image.mixes
    assert trainer.ema_decay is None
    assert schema.OptimizerConfig(name="adamw").lr_scale_batch is None


def test_a_config_saved_before_new_settings_reads_back_with_their_defaults():
    cfg = schema.compose(["dataset=digits", "model=resnet18"])
    saved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    for key in ("crop", "rand_augment", "random_erasing", "mixup_alpha", "mixup_mode"):
        del saved["dataset"][key]
    del saved["trainer"]["ema_decay"]
    del saved["optimizer"]["lr_scale_batch"]
    typed = schema.from_container(saved)
    assert isinstance(typed.dataset, ImageDatasetConfig)
    assert typed.dataset.crop == "pad" and typed.trainer.ema_decay is None
