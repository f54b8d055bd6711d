"""The run config's one typed schema: every setting's type, default, check and source.

Each config group has a dataclass here, registered with Hydra's ConfigStore under the suite's
own name (``agr_suite_schema`` and ``agr_suite_schema/<group>/<kind>``: :data:`SCHEMA`) when the
suite is imported, never by a Hydra plugin, so other Hydra apps neither see nor pay for it. The
YAML files under ``configs/`` start from these schemas
(``defaults: [/agr_suite_schema/model/resnet@_here_]``) and only choose and override: a default is
written here and nowhere else. Hydra checks types while it composes (``trainer.epochs=abc``
names the key); :func:`validate` checks values (``trainer.epochs=0``); :func:`load` turns a
composed config into a :class:`RunConfig` whose attributes the engine and the tasks read, so
``trainer.num_workers`` on the command line is ``cfg.trainer.num_workers`` in the code.

Sources (``source=``), as in the YAML comments: ``[paper]`` the paper's text, ``[code: <file>]``
the authors' code (github.com/hjiang24/AGR-method at commit cb9b2cf), ``[readme]`` their README,
``[choice: <reason>]`` ours. docs/provenance.md says which is which for each experiment;
tests/tables/test_provenance.py checks that every default a paper table relies on has a
source. Engine knobs (where and how fast a run goes, how it is logged) have none.

Checks of the machine a run needs (its folder, device, W&B login) are in
:mod:`agr_suite.engine.preflight`; both raise :class:`ConfigError`, which ``run.py`` reports with
exit code 2 (:mod:`agr_suite.core.errors`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any  # noqa: UP035 (OmegaConf reads these hints)

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from agr_suite.core.errors import ConfigError

# ``agr`` (the library, hence torch) is imported by validate(), not here: this module registers
# the schema that every composition of configs/ needs, `python run.py --help` included.

__all__ = [
    "ConfigError",
    "RunConfig",
    "compose",
    "from_container",
    "load",
    "preset",
    "read_run_config",
    "validate",
]

TASKS = ("classification", "diffusion", "pretraining")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("cosine", "multistep", "constant")
LOGGERS = ("none", "wandb")
WANDB_MODES = ("online", "offline", "disabled", "shared")


def setting(
    default: Any = MISSING,
    check: Callable[[Any], bool] | None = None,
    must_be: str = "",
    source: str = "",
    result: bool = True,
) -> Any:
    """A schema field: its default (lists copied per instance), the check :func:`validate`
    applies and what the value must be, where the default comes from (empty: an engine
    knob, or a default no paper table relies on), and whether it is a result key, one that
    can change a run's numbers (False: it cannot, on a given machine; core.run_identity)."""
    meta = {"check": check, "must_be": must_be, "source": source, "result": result}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def at_least(low: float, integer: bool = True, optional: bool = False) -> tuple:
    kind = "an integer" if integer else "a number"
    ok = (lambda v: _int(v) and v >= low) if integer else (lambda v: _number(v) and v >= low)
    if optional:
        return (lambda v: v is None or ok(v)), f"null or {kind} >= {low:g}"
    return ok, f"{kind} >= {low:g}"


def one_of(choices, optional: bool = False) -> tuple:
    words = ", ".join(str(c) for c in choices)
    if optional:
        return (lambda v: v is None or v in choices), f"null or one of {words}"
    return (lambda v: v in choices), f"one of {words}"


def fraction(low_open: bool = False, high_open: bool = False) -> tuple:
    def ok(v):
        return _number(v) and (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)

    return ok, f"a number in {'(' if low_open else '['}0, 1{')' if high_open else ']'}"


def _check(pair: tuple, default: Any = MISSING, source: str = "", result: bool = True) -> Any:
    return setting(default, check=pair[0], must_be=pair[1], source=source, result=result)


# The authors' files (github.com/hjiang24/AGR-method, commit cb9b2cf) the sources cite.
CIFAR100 = "Image_classification/cifar100/train.py"
DDPM = "Image_generation/main_ddpm.py"
ALBERT = "Language_presentation/Albert/pretrain.py"
# Files those scripts import by default but the authors' repository does not contain: their
# values are the upstream projects' (docs/provenance.md), so they count as our choice.
ALBERT_CONFIG = (
    "ALBERT-Pytorch's config/albert_unittest.json, the default --model_cfg of the authors' "
    f"{ALBERT}, which their repository does not contain"
)
DDPM_MODEL = (
    f"pytorch-ddpm's model.py, the `model` module the authors' {DDPM} imports but their "
    "repository does not contain"
)
ALBERT_MODEL_CODE = (
    "[choice: following the model code of the ALBERT-Pytorch lineage the authors forked "
    "(models.py, not in their repository)]"
)


# ----------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    epochs: int = _check(
        at_least(1),
        200,
        "[code: Image_classification/cifar100/process.py] 200 epochs per Table 2 CIFAR-100 run "
        "(its train.py runs to the EPOCH of a settings module it does not ship)",
    )
    batch_size: int = _check(
        at_least(1),
        128,
        f"[code: {CIFAR100}] -b 128; per process (the effective batch is x world size x "
        "accumulate)",
    )
    eval_batch_size: int | None = _check(at_least(1, optional=True), None)  # null: batch_size
    accumulate: int = _check(at_least(1), 1, f"[code: {CIFAR100}] one step per batch")
    # auto: bf16 autocast on a GPU that has it, fp32 on CPU
    precision: str = _check(
        one_of(PRECISIONS),
        "auto",
        "[choice: bf16 autocast where the GPU has it, for speed; the authors' CIFAR-100, DDPM "
        "and ALBERT scripts train in fp32 (precision=fp32 for theirs)]",
    )
    # global grad-norm clip, applied after unscale and before AGR
    grad_clip: float | None = _check(
        (lambda v: v is None or (_number(v) and v > 0), "null or a number > 0"),
        None,
        f"[code: {CIFAR100}] no clipping (Table 1 sets {DDPM}'s 1.0)",
    )
    # classification; with mixup or cutmix (dataset.mixup_alpha, dataset.cutmix_alpha) it is
    # applied inside their soft targets, as timm's Mixup does
    label_smoothing: float = _check(
        fraction(high_open=True), 0.0, f"[code: {CIFAR100}] plain cross-entropy"
    )
    eval_every: int = _check(
        at_least(1),
        1,
        f"[code: {CIFAR100}] the test split after every epoch, as "
        "Language_presentation/Albert/train.py",
    )  # epochs
    # extra epochs to evaluate at (e.g. Table 1's epochs 1, 401, ... of the authors' code)
    eval_at: list[int] = _check(
        (lambda v: all(_int(e) and e >= 1 for e in v), "a list of epoch numbers >= 1"),
        [],
        "[choice] no evaluation epochs besides eval_every's and the last",
    )
    # optimizer steps between AGR diagnostics
    log_every: int = _check(at_least(1), 50, result=False)
    compile: bool = setting(False)
    # a GPU speed option; with torch 2.14.1 on an AVX2 CPU (2-core AMD EPYC, 2026-12-03),
    # oneDNN crashed or hung in the weight gradient of channels_last 1x1 convolutions of a
    # ResNet-18 at base width 4 (width 8 ran)
    channels_last: bool = setting(False)
    devices: str = _check(one_of(DEVICES), "auto")
    # torch's intra-op threads for the run (torch.set_num_threads); null: torch's default, one
    # per core. CPU reductions are split across threads, so a CPU run's numbers depend on
    # this count: a fixed value makes them the same on machines with more or fewer cores
    # (the same CPU kernels assumed).
    cpu_threads: int | None = _check(at_least(1, optional=True), None)
    num_workers: int = _check(at_least(0), 4)
    # an int caps train and eval batches per epoch, and a generation evaluation's samples
    limit_batches: int | None = _check(at_least(1, optional=True), None)
    # A run has diverged (status failed, the last good checkpoint kept) when its training loss
    # or an evaluation metric is NaN/inf, or a training batch's loss exceeds this factor times
    # the run's first batch loss (about ln(classes) for a classifier, ~1 for a DDPM); null:
    # only non-finite values count.
    divergence_factor: float | None = _check(
        (lambda v: v is None or (_number(v) and v > 1), "null or a number > 1"), 100.0
    )
    deterministic: bool = setting(False)
    # Classification: an EMA of the weights (agr_suite.engine.ema, float32, no warm-up) updated
    # after every optimizer step and evaluated beside the raw weights (ema_top1, ema_top5,
    # ema_loss); null: none. The DDPMs keep theirs in model.ema_decay.
    ema_decay: float | None = _check(
        (lambda v: v is None or (_number(v) and 0 <= v <= 1), "null or a number in [0, 1]"),
        None,
        f"[code: {CIFAR100}] no average of the weights (the DDPM's is model.ema_decay)",
    )


# --------------------------------------------------------------------------- optimizer
@dataclass
class OptimizerConfig:
    """``agr.build_optimizer``'s settings, which the library checks (``agr.check_options``);
    the engine's own (``ENGINE_KEYS``) are checked here. A null lr, weight_decay, betas, eps or
    momentum is the optimizer family's own default (``agr.optim.FAMILIES``)."""

    name: str = MISSING
    lr: float | None = None
    # Linear lr scaling: the optimizer's lr is lr x (trainer.batch_size x trainer.accumulate x
    # world size) / lr_scale_batch, the rule of TinyViT's main.py; null: lr as given.
    lr_scale_batch: int | None = _check(
        at_least(1, optional=True),
        None,
        f"[code: {CIFAR100}, {DDPM}, {ALBERT}] the lr as given; TinyViT's main.py scales it",
    )
    weight_decay: float | None = None
    betas: list[float] | None = setting(
        None,
        source=f"[code: {CIFAR100}, {DDPM}] pass no betas: the family's own, torch AdamW's "
        "(0.9, 0.999) and Adan_AGR.py's (0.98, 0.92, 0.99)",
    )
    eps: float | None = setting(
        None, source=f"[code: {CIFAR100}, {DDPM}] pass no eps: the family's own 1e-8"
    )
    momentum: float | None = setting(
        None,
        source="[choice] null: unused by AdamW and Adan; configs/optimizer/sgd.yaml sets SGD's",
    )
    # Adan's weight decay: false = proximal (the official Adan's default), true = decoupled
    no_prox: bool = setting(False, source="[code: Adan_AGR.py] no_prox=False, never changed")
    impl: str = "auto"
    # True holds in the authors' CIFAR-100, DDPM and ALBERT scripts, which give the optimizer
    # model.parameters() as one group. The TinyImageNet cells follow the official ConvNeXt
    # (optim_factory.py) and TinyViT (optimizer.py) training code, which exclude norms and
    # biases: their presets set false.
    # false: biases, 1-D parameters (norms, layer scales) and the model's no_weight_decay()
    # names (a timm ViT's pos_embed and cls_token) without weight decay, as timm's
    # param_groups_weight_decay and the official ConvNeXt and TinyViT code
    decay_bias_and_norm: bool = setting(
        True,
        source=f"[code: {CIFAR100}, {DDPM}, {ALBERT}] every parameter in one group, so every "
        "parameter decays (the DDPM's decay is 0); the TinyImageNet presets override it",
    )
    # all: every parameter with a gradient, as the authors' code; weights: ndim >= 2 (the
    # paper text)
    agr_scope: str = setting(
        "all",
        source="[code: AdamW_AGR.py, Adan_AGR.py] every parameter with a gradient; weights only "
        "(the paper text's conv and FC layers) is an ablation arm",
    )
    agr_until_epoch: float | None = _check(
        at_least(0, integer=False, optional=True),
        None,
        "[code: AdamW_AGR.py, Adan_AGR.py] AGR at every step; the paper text's suspension "
        "after the early epochs is an ablation arm",
    )
    # the dose k in g <- g * (1 - alpha)**k (AGR's factor applied k times); 1 is AGR, 0 the
    # identity (other values: a dose-response control)
    agr_strength: float = setting(
        1.0, source="[code: AGR.py] AGR applied once per step (k = 1); other doses are our controls"
    )
    # true: the null control, each tensor's (dosed) AGR dampings in a random order, rescaled
    # to remove the same L1 mass per tensor (permutations seeded by the run's seed)
    agr_permuted: bool = setting(
        False, source="[code: AGR.py] AGR's own per-element dampings; the permuted null is ours"
    )
    # AGR's neighbours (optimizer=<family>_gc / <family>_agc; agr.transforms): GC on tensors
    # with more than one dimension, or (true) more than three (conv weights only)
    gc_conv_only: bool = setting(
        False,
        source="[paper: Yong et al. 2020, arXiv 2004.01461; code: Yonghongwei/"
        "Gradient-Centralization, Centralization.py] conv and FC weights (gc_conv_only=False)",
    )
    # AGC's lambda and epsilon: G_i <- G_i * lambda * max(||W_i||, eps) / ||G_i|| per output unit
    # where that factor is below 1
    agc_clipping: float = _check(
        (lambda v: _number(v) and 0 < v < float("inf"), "a finite number > 0"),
        0.01,
        "[code: deepmind-research nfnets/optim.py, SGD_AGC] clipping=0.01 (timm's default too)",
    )
    agc_eps: float = _check(
        (lambda v: _number(v) and 0 < v < float("inf"), "a finite number > 0"),
        1.0e-3,
        "[code: deepmind-research nfnets/optim.py, SGD_AGC] eps=1e-3 (timm's default too)",
    )
    agc_skip_final_linear: bool = setting(
        True,
        source="[paper: Brock et al. 2021, arXiv 2102.06171, Sec. 4.1, as recalled: not read "
        "here] the final linear layer is not clipped; false clips every layer as timm does",
    )

    def library_options(self) -> dict[str, Any]:
        """The settings ``agr.build_optimizer`` takes as they are (all but name and
        ``ENGINE_KEYS``, which the engine turns into others)."""
        skip = ("name", *ENGINE_KEYS)
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        options = {key: value for key, value in options.items() if key not in skip}
        if options["betas"] is not None:
            options["betas"] = tuple(options["betas"])
        options["no_prox"] = options["no_prox"] or None  # false is every family's default
        return options


# The optimizer settings the engine turns into others before agr.build_optimizer sees them.
ENGINE_KEYS = ("agr_until_epoch", "agr_permuted", "lr_scale_batch")


# --------------------------------------------------------------------------- scheduler
@dataclass
class SchedulerConfig:
    name: str = _check(one_of(SCHEDULES))
    warmup_epochs: float = _check(
        at_least(0, integer=False),
        0.0,
        "[choice] no warm-up unless a schedule or preset sets one (multistep.yaml 1 epoch, "
        "Table 1 200 steps)",
    )
    warmup_steps: int | None = _check(
        at_least(0, optional=True),
        None,
        "[choice] null: the warm-up is counted in epochs (warmup_epochs)",
    )  # overrides epochs
    milestones: list[int] = _check(
        (lambda v: all(_int(m) and m >= 0 for m in v), "a list of epoch numbers"),
        [],
        "[choice] none unless a multistep schedule sets them (multistep.yaml)",
    )  # multistep: the LR is multiplied by gamma at each of these epochs
    gamma: float = _check(
        (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
        0.1,
        "[choice] torch MultiStepLR's default; multistep.yaml sets the authors' 0.2",
    )
    min_lr_ratio: float = _check(
        fraction(),
        0.0,
        "[choice] a cosine decay to 0; the official ConvNeXt and TinyViT schedules end at "
        "min_lr 1e-6 and 5e-6 (ratios 2.5e-4 and 0.01), which a TinyImageNet preset may set",
    )  # cosine: the final LR / the peak LR


# ------------------------------------------------------------------------------ logger
@dataclass
class LoggerConfig:
    """Weights & Biases by W&B's own conventions: a value left null is W&B's choice from its
    environment variables (WANDB_MODE, WANDB_ENTITY, WANDB_PROJECT, WANDB_DIR)."""

    name: str = _check(one_of(LOGGERS), result=False)
    project: str | None = setting(None, result=False)  # null: WANDB_PROJECT, else agr-suite
    # null: WANDB_ENTITY, else the account's default
    entity: str | None = setting(None, result=False)
    group: str | None = setting("${experiment_name}", result=False)
    run_name: str | None = setting(
        "${dataset.name}-${model.name}-${optimizer.name}-seed${seed}", result=False
    )
    # null: W&B decides (WANDB_MODE, else online)
    mode: str | None = _check(one_of(WANDB_MODES, optional=True), None, result=False)
    dir: str | None = setting(None, result=False)  # null: WANDB_DIR, else the run folder
    tags: list[str] = setting([], result=False)


@dataclass
class PathsConfig:
    """Relative paths are relative to the directory you run from."""

    data_dir: str = setting("${oc.env:AGR_DATA_DIR,data}", result=False)
    runs: str = setting("${oc.env:AGR_RUNS_DIR,runs}", result=False)


# ----------------------------------------------------------------------------- dataset
@dataclass
class DatasetConfig:
    """What every data set's schema has; each kind's schema sits beside its readers
    (agr_suite/images/config.py, agr_suite/pretraining/config.py)."""

    name: str = setting()
    # Download into ${paths.data_dir} when the files are missing (needs network).
    download: bool = setting(True, result=False)

    def problems(self, cfg: Any) -> list[str]:
        """What this section forbids given the rest of the run config (``cfg``)."""
        return []


# ------------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    """What every model's schema has; each family's schema sits beside the family
    (agr_suite/<family>/config.py)."""

    name: str = setting()
    task: str = _check(one_of(TASKS))

    def problems(self, cfg: Any) -> list[str]:
        """What this section forbids given the rest of the run config (``cfg``)."""
        return []

    def options(self) -> dict[str, Any]:
        """The architecture's settings for its builder: every field but ``name`` and
        ``task``, without the nulls (a null is the builder's own default)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "task") and getattr(self, f.name) is not None
        }


# ----------------------------------------------------------------------------- metrics
@dataclass
class MetricsConfig:
    """What a task's own evaluation settings extend (``metrics``: Table 1's generation
    metrics, agr_suite/diffusion/config.py)."""


# -------------------------------------------------------------------------------- run
@dataclass
class RunConfig:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    metrics: MetricsConfig | None = None  # chosen by the diffusion models
    task: str = _check(one_of(TASKS), "${model.task}")  # set by the model choice
    # names the folder level above the runs, so sweeps of one study land together
    experiment_name: str = setting("default", result=False)
    seed: int = _check(at_least(0), 0)
    # A completed run is skipped unless overwrite=true; then its folder is renamed to
    # <folder>.replaced-<time> and the run starts afresh.
    overwrite: bool = setting(False, result=False)
    # The run folder's name ends in a hash of every setting that can change the run's numbers
    # (agr_suite.core.run_identity); the paper-table presets set false to keep readable names.
    folder_hash: bool = setting(True, result=False)


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {},
    "model": {},
    "optimizer": {"optimizer": OptimizerConfig},
    "scheduler": {"scheduler": SchedulerConfig},
    "trainer": {"trainer": TrainerConfig},
    "logger": {"logger": LoggerConfig},
    "paths": {"paths": PathsConfig},
    "metrics": {},
}
"""group -> kind -> schema: ``configs/<group>/<choice>.yaml`` starts from
``/agr_suite_schema/<group>/<kind>``. The data set, model and metrics kinds register themselves
from their families' ``config.py`` (which ``import agr_suite`` loads)."""

SCHEMA = "agr_suite_schema"
"""The ConfigStore name of the run's schema (configs/config.yaml's first default) and the group
above every kind's (``agr_suite_schema/<group>/<kind>``): the suite's own name, so that it
cannot meet another app's configs, and hidden from ``python run.py --help``."""


def register_schema(group: str, kind: str, schema: type) -> None:
    """Make ``schema`` the kind ``kind`` of ``group`` (``dataset``, ``model`` or ``metrics``),
    for Hydra (``/agr_suite_schema/<group>/<kind>``) and for reading saved configs."""
    SCHEMAS[group][kind] = schema
    ConfigStore.instance().store(group=f"{SCHEMA}/{group}", name=kind, node=schema)


ConfigStore.instance().store(name=SCHEMA, node=RunConfig)


# --------------------------------------------------------------------------- checking
def _walk(node: Any, prefix: str):
    """(dotted key, value, field) of every schema field under a config object."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _walk(value, key + ".")
        else:
            yield key, value, f


def validate(cfg: RunConfig | dict[str, Any]) -> None:
    """Raise ConfigError listing every key whose value is impossible (types were checked
    when the config was composed; a plain resolved config is typed first)."""
    if not isinstance(cfg, RunConfig):
        from_container(cfg)  # types it, then validates it
        return
    problems = []
    for key, value, f in _walk(cfg, ""):
        check = f.metadata.get("check")
        if check is None:
            continue
        try:
            ok = bool(check(value))
        except TypeError:
            ok = False
        if not ok:
            problems.append(f"  {key}={value!r}: must be {f.metadata['must_be']}")
    problems += _cross_field_problems(cfg)
    import agr  # here, not at the top: see the imports

    try:
        agr.check_options(cfg.optimizer.name, **cfg.optimizer.library_options())
    except agr.optim.OptionError as error:
        value = getattr(cfg.optimizer, error.key, None)
        problems.append(f"  optimizer.{error.key}={value!r}: {error}")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))


def _cross_field_problems(cfg: RunConfig) -> list[str]:
    model, optimizer = cfg.model, cfg.optimizer
    problems = cfg.dataset.problems(cfg) + model.problems(cfg)
    if cfg.task != model.task:
        problems.append(f"  task={cfg.task!r}: must be the model's task {model.task!r}")
    if cfg.trainer.ema_decay is not None and model.task != "classification":
        where = "model.ema_decay" if model.task == "diffusion" else "nothing here"
        problems.append(
            f"  trainer.ema_decay={cfg.trainer.ema_decay}: an EMA for image classification; "
            f"a {model.task} run's EMA is {where}"
        )
    if optimizer.lr_scale_batch is not None and optimizer.lr is None:
        problems.append(
            f"  optimizer.lr_scale_batch={optimizer.lr_scale_batch}: scales optimizer.lr, "
            "which is null (the family default); set optimizer.lr"
        )
    return problems


# --------------------------------------------------------------------------- loading
def load(cfg: DictConfig) -> RunConfig:
    """The typed, checked run config of a composed one (interpolations resolved); a
    ConfigError naming the key otherwise."""
    try:
        typed = OmegaConf.to_object(_without_hydra(cfg))
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid configuration: {error}") from None
    if not isinstance(typed, RunConfig):
        typed = from_container(typed)
    validate(typed)
    return typed


def _without_hydra(cfg: DictConfig) -> DictConfig:
    if "hydra" not in cfg:
        return cfg
    copy = cfg.copy()
    with open_dict(copy):
        del copy["hydra"]
    return copy


def _schema_for(group: str, values: dict[str, Any]) -> type:
    """The kind of ``group`` whose fields are exactly ``values``' keys (a saved config
    carries every field of its schema), else the one kind that has every key (a config saved
    before settings were added: they take their defaults)."""
    kinds = {
        schema: {f.name for f in dataclasses.fields(schema)} for schema in SCHEMAS[group].values()
    }
    for schema, names in kinds.items():
        if names == set(values):
            return schema
    wider = [schema for schema, names in kinds.items() if names > set(values)]
    if len(wider) == 1:
        return wider[0]
    raise ConfigError(
        f"{group}: no schema has exactly the keys {sorted(values)} "
        f"(kinds: {', '.join(SCHEMAS[group])})"
    )


def from_container(values: dict[str, Any] | RunConfig) -> RunConfig:
    """The typed, checked config of a resolved plain config, e.g. a run folder's
    ``config.yaml`` read back (each polymorphic group's schema found by its keys)."""
    if isinstance(values, RunConfig):
        return values
    values = dict(values)
    values.pop("hydra", None)
    base = OmegaConf.structured(RunConfig)
    try:
        for group in ("dataset", "model"):
            node = OmegaConf.structured(_schema_for(group, values[group]))
            base[group] = OmegaConf.merge(node, values[group])
        if values.get("metrics") is not None:
            node = OmegaConf.structured(_schema_for("metrics", values["metrics"]))
            base.metrics = OmegaConf.merge(node, values["metrics"])
        rest = {k: v for k, v in values.items() if k not in ("dataset", "model", "metrics")}
        typed = OmegaConf.to_object(OmegaConf.merge(base, rest))
    except (OmegaConfBaseException, KeyError) as error:
        raise ConfigError(f"invalid configuration: {error}") from None
    validate(typed)
    return typed


def read_run_config(path: str | Path) -> RunConfig:
    """A run folder's ``config.yaml`` as a typed config."""
    return from_container(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def as_dict(cfg: Any) -> dict[str, Any]:
    """A typed config (or part of it) as plain data, e.g. for W&B's run config."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def preset(group: str, choice: str, **overrides: Any) -> Any:
    """The typed config of one group choice (``configs/<group>/<choice>.yaml`` over its
    schema) with ``overrides`` applied: e.g. ``preset("model", "ddpm_small")`` for code that
    builds a model outside a run (benchmarks, tests)."""
    from hydra import compose, initialize_config_dir

    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        # metrics is chosen by the diffusion models' defaults, not by config.yaml's list
        prefix = "+" if group == "metrics" else ""
        composed = compose("config", overrides=[f"{prefix}{group}={choice}"])
    node = composed[group]
    for key, value in overrides.items():
        node[key] = value
    return OmegaConf.to_object(node)


def compose(overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The typed, checked config ``python run.py OVERRIDES`` runs with, e.g. in a notebook or
    a test: ``compose(["dataset=digits", "model=vit", "trainer.epochs=2"])``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        try:
            composed = hydra_compose("config", overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as error:
            raise composition_error(error) from None
    return load(composed)


def composition_error(error: Exception) -> ConfigError:
    """Hydra's composition error with the cause it wraps (``Error merging override
    trainer.epochs=abc`` says why only in its cause: not an integer)."""
    message = str(error)
    cause = error.__cause__
    if cause is not None and str(cause) not in message:
        reason = str(cause).splitlines()[0]
        if "To append to your config use +" in message:  # a key its schema does not have
            message = message.splitlines()[0].rstrip(".")
            reason += " (each choice's settings: `python run.py --cfg job <choice>`)"
        message += f": {reason}"
    return ConfigError(f"{message}\n`python run.py --help` lists the choices")


# ---------------------------------------------------------------- python run.py --help
HIDDEN_GROUPS = ("hydra", SCHEMA, "local")
"""Config groups ``python run.py --help`` does not list: Hydra's own (``--hydra-help`` lists
them), the schema's, and ``local`` (site settings that ``launcher=slurm`` loads, not a choice).
Nor does it list a group or choice whose name starts with ``_``: a fragment that other configs
include and that is no run alone (``experiment/table2/mini/_common``)."""

HELP_WIDTH = 100


def config_groups() -> str:
    """The config groups a user chooses from, each with its choices (a subfolder's choices as
    ``folder/choice``, a line per folder), as Hydra's config loader finds them on the running
    app's search path: ``${agr_suite.config_groups:}`` in ``hydra.help.template``
    (configs/config.yaml), the groups section of ``python run.py --help``."""
    import textwrap

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    if not GlobalHydra.instance().is_initialized():
        return "(the config groups are listed by `python run.py --help`)"
    loader = GlobalHydra.instance().config_loader()
    # the loader's repository of the search path, listed as the loader lists it, without the
    # copy of every source (ConfigStore included) that the loader makes for each listing
    repository = getattr(loader, "repository", loader)

    def folders(group: str, prefix: str = "") -> list[list[str]]:
        """Per folder of ``group`` (itself first, then its subfolders depth first), its
        choices, each ``prefix`` + the folder's path below ``group`` + its name."""
        names = sorted(
            n
            for n in repository.get_group_options(group, ObjectType.CONFIG)
            if not n.startswith("_")
        )
        found = [[prefix + name for name in names]] if names else []
        for sub in sorted(repository.get_group_options(group, ObjectType.GROUP)):
            if not sub.startswith("_"):
                found += folders(f"{group}/{sub}", f"{prefix}{sub}/")
        return found

    lines = []
    for group in sorted(repository.get_group_options("", ObjectType.GROUP)):
        if group in HIDDEN_GROUPS or group.startswith("_"):
            continue
        indent = " " * (len(group) + 2)
        for i, choices in enumerate(folders(group)):
            lines += textwrap.wrap(
                ", ".join(choices),
                HELP_WIDTH,
                initial_indent=f"{group}: " if i == 0 else indent,
                subsequent_indent=indent,
                break_on_hyphens=False,
            )
    # Hydra substitutes $NAME placeholders in the template after this text is in it
    return "\n".join(lines).replace("$", "$$")


if not OmegaConf.has_resolver("agr_suite.config_groups"):
    OmegaConf.register_new_resolver("agr_suite.config_groups", config_groups)
