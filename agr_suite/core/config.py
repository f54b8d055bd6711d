"""The run config's one typed schema: every setting's type, default, check and source.

Each config group has a dataclass here, registered with Hydra's ConfigStore (``schema`` and
``schema/<group>/<kind>``). The YAML files under ``configs/`` start from these schemas
(``defaults: [/schema/model/resnet@_here_]``) and only choose and override: a default is
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

import agr
from agr_suite.core.errors import ConfigError

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
LOADERS = ("auto", "torch", "device")
SCHEDULES = ("cosine", "multistep", "constant")
LOGGERS = ("none", "wandb")
WANDB_MODES = ("online", "offline", "disabled", "shared")
FEATURES = ("auto", "inception", "digits_cnn")
SAMPLE_FROM = ("raw", "ema")
MLM_BIAS_INITS = ("zeros", "unigram")
# agr_suite.diffusion.process.DDIM_VARIANTS (a test checks they agree)
DDIM_VARIANTS = ("ddim", "authors")
UNET_INITS = ("ddpm", "default")
# The training crop of an image classifier: the data set's own (pad: random crop after 4-pixel
# zero padding, flip; CIFAR adds its 15-degree rotation) or timm's ImageNet crop
# (random_resized: RandomResizedCropAndInterpolation, scale 0.08-1, ratio 3/4-4/3, flip).
CROPS = ("pad", "random_resized")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RANDOM_ERASING_MODES = ("const", "rand", "pixel")  # timm.data.random_erasing.RandomErasing
MIXUP_MODES = ("batch", "pair", "elem")  # timm.data.Mixup


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


def _rand_augment_string(value: Any) -> bool:
    """None, or a string timm's ``rand_augment_transform`` parses."""
    if value is None:
        return True
    if not isinstance(value, str) or not value.startswith("rand"):
        return False
    from timm.data import rand_augment_transform

    try:
        rand_augment_transform(value, {})
    except (AssertionError, ValueError, KeyError, IndexError):
        return False
    return True


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
    name: str = setting()
    # Download into ${paths.data_dir} when the files are missing (needs network).
    download: bool = setting(True, result=False)


@dataclass
class ImageDatasetConfig(DatasetConfig):
    # false: the training split gets the test transform (no crop, flip, RandAugment or random
    # erasing; mixup and cutmix are set apart below)
    augment: bool = setting(
        True,
        source=f"[choice: pytorch-cifar100's training pipeline (crop 32 with padding 4, flip, "
        f"15-degree rotation), whose loader the authors' {CIFAR100} imports but does not ship; "
        "TinyImageNet's at 64x64 is ours (agr_suite/images)]",
    )
    hflip: bool = setting(
        True, source=f"[code: {DDPM}] RandomHorizontalFlip on CIFAR-10"
    )  # image generation only
    # torch: DataLoader with CPU workers; device: the whole split on the run's device,
    # augmented there batch by batch; auto: device on CUDA unless the augmentation needs PIL
    # (crop random_resized, rand_augment, random_erasing), torch otherwise
    loader: str = _check(one_of(LOADERS), "auto")
    # Image classification on CIFAR and TinyImageNet: the ImageNet recipes' augmentations, as
    # timm builds them (agr_suite.images.augmentation); the defaults add nothing.
    crop: str = _check(
        one_of(CROPS),
        "pad",
        "[choice: pytorch-cifar100's RandomCrop(32, padding=4), the loader the authors' "
        f"{CIFAR100} imports but does not ship]",
    )
    # the interpolation of the random_resized crop and of RandAugment's geometric operations
    interpolation: str = _check(one_of(INTERPOLATIONS), "bilinear", "[choice] timm's default")
    # a timm RandAugment config string, e.g. rand-m9-mstd0.5-inc1; null: none
    rand_augment: str | None = _check(
        (_rand_augment_string, "null or a timm RandAugment string such as rand-m9-mstd0.5-inc1"),
        None,
        f"[code: {CIFAR100}, {DDPM}] none; the TinyImageNet presets set the official recipes'",
    )
    # timm's RandomErasing after normalisation: its probability per image, fill mode, and the
    # most regions per image
    random_erasing: float = _check(
        fraction(), 0.0, f"[code: {CIFAR100}, {DDPM}] none; the TinyImageNet presets set it"
    )
    random_erasing_mode: str = _check(one_of(RANDOM_ERASING_MODES), "const", "[choice] timm's")
    random_erasing_count: int = _check(at_least(1), 1, "[choice] timm's")
    # timm's Mixup on each training batch (classification): mixup and cutmix Beta(alpha, alpha)
    # (0: off); with either on the loss takes the soft targets, label smoothing included, and
    # the training loader drops its last partial batch (the pairs need an even batch)
    mixup_alpha: float = _check(
        at_least(0, integer=False), 0.0, f"[code: {CIFAR100}] none; the TinyImageNet presets set it"
    )
    cutmix_alpha: float = _check(
        at_least(0, integer=False), 0.0, f"[code: {CIFAR100}] none; the TinyImageNet presets set it"
    )
    # the probability a batch is mixed at all, then of cutmix rather than mixup when both are on
    mixup_prob: float = _check(fraction(), 1.0, "[choice] timm's")
    mixup_switch_prob: float = _check(fraction(), 0.5, "[choice] timm's")
    mixup_mode: str = _check(one_of(MIXUP_MODES), "batch", "[choice] timm's")

    @property
    def mixes(self) -> bool:
        """Whether mixup or cutmix is on."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


@dataclass
class TextDatasetConfig(DatasetConfig):
    """Sentence-pair examples for ALBERT's MLM + SOP (Table 3); sources in wikitext2.yaml."""

    variant: str = _check(
        one_of(("raw", "tokens")),
        "raw",
        f"[choice: the original text; the authors' {ALBERT} reads the tokenised "
        "wiki.*.tokens files (rare words as <unk>): variant=tokens for theirs]",
    )
    eval_split: str = _check(
        one_of(("test", "validation")),
        "test",
        f"[code: {ALBERT}] --test_file wiki.test.tokens, scored after every epoch",
    )
    tokenizer: str = _check(
        (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
        "wordpiece",
        f"[choice: a WordPiece vocabulary trained on the train split, so it runs offline; the "
        f"authors' {ALBERT} loads BERT's uncased vocab.txt, not in their repository]",
    )
    vocab_size: int = _check(
        at_least(16),
        30522,
        f"[choice: the size of BERT's uncased vocabulary, the vocab_size of {ALBERT_CONFIG}]",
    )
    lowercase: bool = setting(True, source=f"[code: {ALBERT}] do_lower_case=True")
    max_length: int = _check(at_least(8), 512, f"[choice: max_len 512 of {ALBERT_CONFIG}]")
    short_seq_prob: float = _check(
        fraction(), 0.1, f"[code: {ALBERT}] SentPairDataLoader's short_sampling_prob"
    )
    mask_prob: float = _check(fraction(low_open=True), 0.15, f"[code: {ALBERT}] --mask_prob")
    max_ngram: int = _check(at_least(1), 3, f"[code: {ALBERT}] --max_gram")
    max_predictions: int = _check(at_least(1), 75, f"[code: {ALBERT}] --max_pred")
    # BERT's 80/10/10 rule; the Table 3 presets set the authors' 1.0 and 0.0
    mask_token_fraction: float = _check(
        fraction(),
        0.8,
        "[choice: BERT's and ALBERT's 80/10/10 rule; the authors' Albert/utils.py masks every "
        "predicted position (1.0 and 0.0), which the Table 3 presets set]",
    )
    random_token_fraction: float = _check(
        fraction(), 0.1, "[choice: BERT's 80/10/10 rule, as mask_token_fraction]"
    )
    eval_seed: int = _check(
        at_least(0),
        0,
        "[choice] one fixed evaluation set for every run and epoch, seeded apart from the run",
    )
    # 1: the evaluation split laid out once, one example per sentence pair. More draws score
    # the same text under more cut points, swaps and masks (draw k: seed eval_seed + k), so a
    # small split gives a less noisy SOP accuracy; Table 3 sets 20.
    eval_draws: int = _check(
        at_least(1),
        1,
        "[choice] the split laid out once, as the authors' one pass; Table 3 sets 20 draws",
    )


# ------------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    name: str = setting()
    task: str = _check(one_of(TASKS))

    def options(self) -> dict[str, Any]:
        """The architecture's settings for its builder: every field but ``name`` and
        ``task``, without the nulls (a null is the builder's own default)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "task") and getattr(self, f.name) is not None
        }


# The image classifiers' settings: null is the architecture's own value, which its builder in
# agr_suite/classification/models documents (ResNet/VGG width 64; ViT-S: patch
# image_size // 8, embed 384, depth 12, 6 heads, MLP ratio 4, drop path 0.1; ConvNeXt-T:
# patch image_size // 32, depths (3, 3, 9, 3), dims (96, 192, 384, 768), drop path 0.1).
ARCH = "[choice] null: the architecture's standard value, which its builder documents"


@dataclass
class ResNetConfig(ModelConfig):
    task: str = "classification"
    base_width: int | None = _check(at_least(1, optional=True), None, ARCH)  # first-stage channels
    zero_init_residual: bool | None = setting(None, source=ARCH)


@dataclass
class VGGConfig(ModelConfig):
    task: str = "classification"
    base_width: int | None = _check(at_least(1, optional=True), None, ARCH)
    hidden_dim: int | None = _check(at_least(0, optional=True), None, ARCH)  # 0: one linear layer
    dropout: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)


@dataclass
class ViTConfig(ModelConfig):
    task: str = "classification"
    patch_size: int | None = _check(at_least(1, optional=True), None, ARCH)
    embed_dim: int | None = _check(at_least(1, optional=True), None, ARCH)
    depth: int | None = _check(at_least(1, optional=True), None, ARCH)
    num_heads: int | None = _check(at_least(1, optional=True), None, ARCH)
    mlp_ratio: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)
    drop_path_rate: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)


@dataclass
class ConvNeXtConfig(ModelConfig):
    task: str = "classification"
    patch_size: int | None = _check(at_least(1, optional=True), None, ARCH)
    depths: list[int] | None = setting(None, source=ARCH)
    dims: list[int] | None = setting(None, source=ARCH)
    drop_path_rate: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)


@dataclass
class DiffusionProcessConfig:
    timesteps: int = _check(at_least(1), 1000, f"[code: {DDPM}] T")
    beta_start: float = _check(at_least(0, integer=False), 1.0e-4, f"[code: {DDPM}] beta_1")
    beta_end: float = _check(at_least(0, integer=False), 0.02, f"[code: {DDPM}] beta_T")
    schedule: str = _check(one_of(("linear", "cosine")), "linear", f"[code: {DDPM}] noise_schedule")
    prediction: str = _check(
        one_of(("epsilon",)), "epsilon", f"[code: {DDPM}] mean_type, an MSE on the noise"
    )


@dataclass
class UNetConfig(ModelConfig):
    """The paper's CIFAR-10 DDPM UNet [code: Image_generation/main_ddpm.py TrainingConfig]: 128
    channels, multipliers [1, 2, 2, 2], 2 residual blocks per level, attention at 16x16,
    dropout 0.1. The UNet class it builds is pytorch-ddpm's model.py, which the authors'
    repository does not contain: its middle-block attention, GroupNorm(32) and Xavier init
    are [choice: that file's design]."""

    task: str = "diffusion"
    block_out_channels: list[int] = setting(
        [128, 256, 256, 256], source=f"[code: {DDPM}] ch 128, ch_mult [1, 2, 2, 2]"
    )
    layers_per_block: int = _check(at_least(1), 2, f"[code: {DDPM}] num_res_blocks")
    # indices of the levels (0 = full resolution) with self-attention
    attention_levels: list[int] = setting([1], source=f"[code: {DDPM}] attn [1]: 16x16")
    mid_attention: bool = setting(True, source=f"[choice: as {DDPM_MODEL}]")
    norm_num_groups: int = _check(at_least(1), 32, f"[choice: GroupNorm(32, ch) as {DDPM_MODEL}]")
    dropout: float = _check(fraction(high_open=True), 0.1, f"[code: {DDPM}] dropout")
    # ddpm: the DDPM UNet's Xavier-uniform init (pytorch-ddpm's model.py); default: PyTorch's
    init: str = _check(one_of(UNET_INITS), "ddpm", f"[choice: the Xavier init of {DDPM_MODEL}]")
    ema_decay: float = _check(
        fraction(), 0.9999, f"[code: {DDPM}] ema_decay, after every optimizer step"
    )
    diffusion: DiffusionProcessConfig = field(default_factory=DiffusionProcessConfig)


@dataclass
class AlbertModelConfig(ModelConfig):
    """ALBERT for MLM + SOP; defaults: the tiny configuration the authors' ALBERT code loads by
    default, config/albert_unittest.json of the ALBERT-Pytorch code they forked, a file their
    repository does not contain [choice: that file's values]. The maximum length comes from
    ``dataset.max_length``, the vocabulary from the tokenizer."""

    task: str = "pretraining"
    embedding_size: int = _check(at_least(1), 24, f"[choice: {ALBERT_CONFIG}]")
    hidden_size: int = _check(at_least(1), 64, f"[choice: {ALBERT_CONFIG}]")
    intermediate_size: int = _check(at_least(1), 256, f"[choice: {ALBERT_CONFIG}]")
    num_hidden_layers: int = _check(at_least(1), 6, f"[choice: {ALBERT_CONFIG}]")
    num_attention_heads: int = _check(at_least(1), 1, f"[choice: {ALBERT_CONFIG}]")
    # erf GELU, hidden dropout 0.1, no attention dropout
    hidden_act: str = setting("gelu", source=ALBERT_MODEL_CODE)
    hidden_dropout_prob: float = _check(fraction(high_open=True), 0.1, ALBERT_MODEL_CODE)
    attention_probs_dropout_prob: float = _check(fraction(high_open=True), 0.0, ALBERT_MODEL_CODE)
    # the standard deviation of the initial weights
    initializer_range: float = _check(
        (lambda v: _number(v) and v > 0, "a number > 0"),
        0.02,
        "[choice: transformers' AlbertConfig default; the authors' model code is not in their "
        "repository]",
    )
    # zeros: the MLM output bias starts at 0 (transformers'); unigram: at each token's
    # log-frequency in the training text (agr_suite.pretraining.albert.unigram_bias), so the
    # model starts at the input-free answer instead of spending thousands of Adam steps (each
    # moving a bias by about lr) on the tokens' frequencies
    mlm_bias_init: str = _check(one_of(MLM_BIAS_INITS), "zeros", "[choice: transformers']")


# ----------------------------------------------------------------------------- metrics
@dataclass
class GenerationMetricsConfig:
    """How Table 1's samples are drawn and scored [code: Image_generation/main_ddpm.py]."""

    # auto: Inception-v3 on CIFAR, the digits CNN on digits
    features: str = _check(
        one_of(FEATURES),
        "auto",
        "[code: Image_generation/score/both.py] Inception-v3 features on CIFAR-10 (the digits "
        "CNN on the embedded digits)",
    )
    # torch-fidelity's weights-inception-2015-12-05-6726825d.pth; null: the torch.hub cache,
    # downloaded there when missing (needs network)
    inception_weights: str | None = setting(None, result=False)
    num_samples: int = _check(
        at_least(2), 50000, f"[code: {DDPM}] num_images, per evaluation, over all processes"
    )
    # authors: their DDIMSampler (timesteps t+1, ends at abar_0), what Table 1 ran;
    # ddim: Song et al.'s timesteps, the standard CIFAR-10 evaluation
    ddim_variant: str = _check(
        one_of(DDIM_VARIANTS),
        "authors",
        "[code: Image_generation/DDIM/utils/engine.py] DDIMSampler, linear method",
    )
    steps: int = _check(at_least(1), 100, f"[code: {DDPM}] steps, DDIM steps")
    eta: float = _check(at_least(0, integer=False), 0.0, f"[code: {DDPM}] eta")
    # raw: the authors sampled the raw (non-EMA) weights | ema
    sample_from: str = _check(
        one_of(SAMPLE_FROM),
        "raw",
        "[code: Image_generation/DDIM/generate.py] loads the checkpoint's net_model, not EMA",
    )
    is_splits: int = _check(at_least(1), 10, "[code: Image_generation/score/both.py] splits=10")
    batch_size: int = _check(at_least(1), 500)  # sampling and feature batch per process
    # torch.compile the UNet for DDIM sampling: auto = on CUDA. (Any, not Union[str, bool]:
    # OmegaConf 2.3 cannot fill an Optional section that holds a Union field.)
    compile: Any = _check((lambda v: v in ("auto", True, False), "auto, true or false"), "auto")
    # images in each samples_epoch<N>.png
    grid_size: int = _check(at_least(1), 64, result=False)


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
    metrics: GenerationMetricsConfig | None = None  # chosen by the diffusion models
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
    "dataset": {"image": ImageDatasetConfig, "text": TextDatasetConfig},
    "model": {
        "resnet": ResNetConfig,
        "vgg": VGGConfig,
        "vit": ViTConfig,
        "convnext": ConvNeXtConfig,
        "unet": UNetConfig,
        "albert": AlbertModelConfig,
    },
    "optimizer": {"optimizer": OptimizerConfig},
    "scheduler": {"scheduler": SchedulerConfig},
    "trainer": {"trainer": TrainerConfig},
    "logger": {"logger": LoggerConfig},
    "paths": {"paths": PathsConfig},
    "metrics": {"generation": GenerationMetricsConfig},
}
"""group -> kind -> schema: ``configs/<group>/<choice>.yaml`` starts from
``/schema/<group>/<kind>``."""


# The groups whose YAML files name their schema in their defaults list; the others merge
# into RunConfig's typed fields.
NAMED_SCHEMAS = ("dataset", "model", "metrics")


def register() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent; done when this module loads)."""
    store = ConfigStore.instance()
    store.store(name="schema", node=RunConfig)
    for group in NAMED_SCHEMAS:
        for kind, schema in SCHEMAS[group].items():
            store.store(group=f"schema/{group}", name=kind, node=schema)


register()


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
    try:
        agr.check_options(cfg.optimizer.name, **cfg.optimizer.library_options())
    except agr.optim.OptionError as error:
        value = getattr(cfg.optimizer, error.key, None)
        problems.append(f"  optimizer.{error.key}={value!r}: {error}")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))


def _cross_field_problems(cfg: RunConfig) -> list[str]:
    problems = []
    data, model, optimizer = cfg.dataset, cfg.model, cfg.optimizer
    if isinstance(data, TextDatasetConfig):
        total = data.mask_token_fraction + data.random_token_fraction
        if total > 1:
            problems.append(
                f"  dataset.mask_token_fraction + dataset.random_token_fraction = {total}: "
                "must be <= 1 (the rest keeps the original token)"
            )
    if isinstance(model, AlbertModelConfig) and model.hidden_size % model.num_attention_heads:
        problems.append(
            f"  model.hidden_size={model.hidden_size} must be a multiple of "
            f"model.num_attention_heads={model.num_attention_heads}"
        )
    if cfg.task != model.task:
        problems.append(f"  task={cfg.task!r}: must be the model's task {model.task!r}")
    if model.task == "diffusion" and cfg.metrics is None:
        problems.append("  metrics: a diffusion model needs metrics=generation (or another)")
    if isinstance(data, ImageDatasetConfig):
        problems += _augmentation_problems(cfg, data)
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


def _augmentation_problems(cfg: RunConfig, data: ImageDatasetConfig) -> list[str]:
    """The classification recipe's augmentations: where they can run."""
    problems = []
    chosen = [
        f"dataset.{key}={getattr(data, key)}"
        for key, off in (("crop", "pad"), ("rand_augment", None), ("random_erasing", 0.0))
        if getattr(data, key) != off
    ]
    mixing = [
        f"dataset.{key}={getattr(data, key)}"
        for key in ("mixup_alpha", "cutmix_alpha")
        if getattr(data, key) > 0
    ]
    if (chosen or mixing) and cfg.model.task != "classification":
        problems.append(
            f"  {', '.join(chosen + mixing)}: augmentations of image classification, not of a "
            f"{cfg.model.task} run"
        )
        return problems
    if chosen and data.loader == "device":
        problems.append(
            f"  dataset.loader=device: the device loader has no {', '.join(chosen)} (PIL "
            "augmentations); use dataset.loader=auto or torch"
        )
    if mixing and cfg.trainer.batch_size % 2:
        problems.append(
            f"  trainer.batch_size={cfg.trainer.batch_size}: mixup and cutmix pair each image "
            "with another of its batch (timm's Mixup), so the batch must be even"
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
            base.metrics = OmegaConf.merge(
                OmegaConf.structured(GenerationMetricsConfig), values["metrics"]
            )
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
