"""Image-generation metrics: FID and Inception Score over any feature extractor.

The paper's numbers use torch-fidelity's ``inception-v3-compat`` (the bit-exact PyTorch port of
the TensorFlow Inception used by the original FID/IS code): :class:`InceptionFeatures` wraps it
(pool3 features ``'2048'`` for FID, ``'logits_unbiased'`` for IS, as torch-fidelity does). The
metric code itself takes any :class:`FeatureExtractor`, so tests and the embedded CPU run use
:class:`agr_suite.diffusion.digits_features.DigitsFeatures`, which needs no download.

The arithmetic is torch-fidelity's; this module adds batching over any extractor, reference
statistics cached as ``.npz`` (with the extractor and data set recorded) and the staging of the
Inception weights.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch_fidelity
from torch import Tensor
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)
from torch_fidelity.metric_fid import (
    KEY_METRIC_FID,
    fid_features_to_statistics,
    fid_statistics_to_metric,
)
from torch_fidelity.metric_isc import (
    KEY_METRIC_ISC_MEAN,
    KEY_METRIC_ISC_STD,
    isc_features_to_metric,
)

from agr_suite.core.atomic import write_atomic
from agr_suite.core.errors import UserError

__all__ = [
    "INCEPTION_FEATURE_NAMES",
    "INCEPTION_WEIGHTS_BYTES",
    "INCEPTION_WEIGHTS_FILENAME",
    "INCEPTION_WEIGHTS_SHA256",
    "INCEPTION_WEIGHTS_URL",
    "FeatureExtractor",
    "GenerationMetrics",
    "InceptionFeatures",
    "InceptionWeightsMissingError",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "inception_weights_cache_path",
    "resolve_inception_weights",
]

# --------------------------------------------------------------------------- core formulas


def feature_statistics(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], sigma [D, D]) of features [N, D] in float64, by torch-fidelity's
    ``fid_features_to_statistics``: sigma is the unbiased (N - 1) sample covariance."""
    features = torch.as_tensor(features).detach().cpu().double()
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {tuple(features.shape)}")
    stats = fid_features_to_statistics(features)
    return stats["mu"], stats["sigma"]


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) in float64, by torch-fidelity's
    ``fid_statistics_to_metric``: ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1
    sigma2))``, the trace taken as the sum of the square roots of the product's eigenvalues (real
    parts). That is pytorch-fid's value without its ``sqrtm`` and ``eps`` retry: it stays finite
    for singular covariances."""
    mu1, mu2 = (np.atleast_1d(np.asarray(mu, np.float64)) for mu in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(sigma, np.float64)) for sigma in (sigma1, sigma2))
    d = mu1.size
    if not (mu1.shape == mu2.shape == (d,) and sigma1.shape == sigma2.shape == (d, d)):
        raise ValueError(
            f"means {mu1.shape}, {mu2.shape} and covariances {sigma1.shape}, {sigma2.shape} "
            "do not match"
        )
    stats1, stats2 = {"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}
    return fid_statistics_to_metric(stats1, stats2, verbose=False)[KEY_METRIC_FID]


def inception_score(
    logits: np.ndarray | Tensor, splits: int = 10, *, shuffle: bool = False, rng_seed: int = 2020
) -> tuple[float, float]:
    """(mean, std) of the Inception Score of ``logits`` [N, C] over ``splits`` splits, by
    torch-fidelity's ``isc_features_to_metric`` in float64: split ``i`` is rows
    ``[i*N//splits, (i+1)*N//splits)``, its score ``exp(mean_x KL(p(y|x) || p(y)))``, the std
    numpy's (``ddof=0``). ``shuffle`` permutes the rows first with ``RandomState(rng_seed)``
    (torch-fidelity's default: on, seed 2020). Logit gaps over ~745 (a class's softmax 0 in
    float64 throughout a split) give NaN, as in torch-fidelity."""
    logits = torch.as_tensor(logits).detach().cpu()
    if logits.dim() != 2:
        raise ValueError(f"need logits [N, C], got shape {tuple(logits.shape)}")
    if splits < 1 or logits.shape[0] < splits:
        raise ValueError(f"need at least one sample per split: N={len(logits)}, splits={splits}")
    score = isc_features_to_metric(logits, splits, shuffle, rng_seed)
    return score[KEY_METRIC_ISC_MEAN], score[KEY_METRIC_ISC_STD]


# --------------------------------------------------------------------------- extractors


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the metrics need from a feature extractor.

    ``features(images)`` maps a batch of images (already on ``device``; uint8 in 0..255 or
    float in [-1, 1], the extractor converts) to ``(pool_features [N, D], logits [N, C])``:
    the features whose Gaussian statistics FID compares and the class logits IS scores.
    ``name`` identifies the extractor and its weights (it keys cached reference statistics);
    ``label`` is how result tables name the FID it yields. ``describe()`` returns a dict that is
    recorded next to every number.
    """

    name: str
    label: str
    device: torch.device

    def features(self, images: Tensor) -> tuple[Tensor, Tensor]: ...

    def describe(self) -> dict: ...


INCEPTION_WEIGHTS_URL = URL_INCEPTION_V3
INCEPTION_WEIGHTS_FILENAME = URL_INCEPTION_V3.rsplit("/", 1)[1]
# Upstream publishes the SHA-256's first 8 digits, in the file name (the torch.hub convention,
# 6726825d); the full digest and the size are those that independent projects record for this
# file and for pytorch-fid's identical pt_inception-2015-12-05-6726825d.pth.
INCEPTION_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_WEIGHTS_BYTES = 95_628_359
INCEPTION_FEATURE_NAMES = ("2048", "logits_unbiased")  # torch-fidelity's defaults for FID / IS
INCEPTION_EXTRACTOR_NAME = "inception-v3-compat"
CONFIG_KEY = "metrics.inception_weights"
OFFLINE_ENV = "AGR_OFFLINE"  # "1": never try to download (fail at once instead)


class InceptionWeightsMissingError(UserError, FileNotFoundError):
    """torch-fidelity's Inception-v3 weights are neither staged locally nor downloadable."""


def inception_weights_cache_path() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` (torch-fidelity's own loader) caches the
    weights: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILENAME


def _download_weights(url: str, destination: Path, timeout: float = 30.0) -> None:
    """Download ``url`` to ``destination`` (through a temporary file, renamed when complete),
    checking the SHA-256 prefix in its file name (the torch.hub convention). ``timeout`` bounds
    each network wait, so a machine without network fails instead of hanging."""
    match = re.search(r"-([a-f0-9]+)\.", destination.name)

    def fetch(tmp: str) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise RuntimeError(
                f"SHA-256 of the download ({digest.hexdigest()[:8]}...) does not start with "
                f"{match.group(1)} (corrupted or partial download)"
            )

    write_atomic(destination, fetch, suffix=".part")


def _missing_message(looked: list[str], what: str, destination: Path | None = None) -> str:
    staged = f"{CONFIG_KEY}=/path/to/{INCEPTION_WEIGHTS_FILENAME}"
    stage = (
        f"copy it to {destination}, or set {staged} to where it is"
        if destination
        else f"either put it at {inception_weights_cache_path()} (torch.hub's cache, where "
        f"torch-fidelity looks) or pass {staged}"
    )
    return (
        f"Inception-v3 weights for FID/IS (torch-fidelity '{INCEPTION_EXTRACTOR_NAME}') are "
        f"missing: {what}. The file needed is {INCEPTION_WEIGHTS_FILENAME}; looked in "
        f"{', '.join(looked)}. To stage it, download {INCEPTION_WEIGHTS_URL} on a machine with "
        f"network access and {stage}."
    )


def resolve_inception_weights(
    weights_path: str | os.PathLike | None = None, *, allow_download: bool | None = None
) -> Path:
    """The local file of torch-fidelity's Inception weights.

    ``weights_path`` (the ``metrics.inception_weights`` config key) must exist when given; with
    ``None`` the torch.hub cache is used, downloading there when missing unless
    ``allow_download`` is false (default: true unless ``$AGR_OFFLINE=1``). Raises
    :class:`InceptionWeightsMissingError` with staging instructions otherwise.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if path.is_file():
            return path
        what = f"{CONFIG_KEY}={weights_path} is not an existing file"
        raise InceptionWeightsMissingError(_missing_message([str(path)], what, path))
    cached = inception_weights_cache_path()
    if cached.is_file():
        return cached
    if allow_download is None:
        allow_download = os.environ.get(OFFLINE_ENV, "") not in ("1", "true", "yes")
    looked = [f"{cached} (torch.hub cache)", f"{CONFIG_KEY} (unset)"]
    if not allow_download:
        what = f"not in the torch.hub cache and downloads are disabled ({OFFLINE_ENV}=1 or flag)"
        raise InceptionWeightsMissingError(_missing_message(looked, what))
    try:
        _download_weights(INCEPTION_WEIGHTS_URL, cached)
    except Exception as err:  # URLError/OSError offline, RuntimeError on a hash mismatch
        what = f"downloading {INCEPTION_WEIGHTS_URL} failed ({type(err).__name__}: {err})"
        raise InceptionWeightsMissingError(_missing_message(looked, what)) from err
    if not cached.is_file():
        raise InceptionWeightsMissingError(_missing_message(looked, "the download left no file"))
    return cached


def _to_uint8_rgb(images: Tensor) -> Tensor:
    """uint8 [N, 3, H, W]: float images are taken as [-1, 1]; one channel is repeated."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images


class InceptionFeatures:
    """torch-fidelity's ``inception-v3-compat`` (``FeatureExtractorInceptionV3``): pool3
    features ``'2048'`` (FID) and ``'logits_unbiased'`` (IS, 1008 classes), exactly the layers
    torch-fidelity's ``calculate_metrics`` uses. Inputs: uint8 [N, 3, H, W] in 0..255 (what
    torch-fidelity expects; it resizes to 299x299 itself) or float in [-1, 1] (quantised to
    uint8 first, as saving the samples as PNG would); one channel is repeated to three.

    ``weights_path``: the ``metrics.inception_weights`` config key; see
    :func:`resolve_inception_weights` for the lookup and :class:`InceptionWeightsMissingError`.
    """

    label = "FID (Inception-v3, torch-fidelity inception-v3-compat)"
    is_label = "IS (Inception-v3, torch-fidelity inception-v3-compat)"

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        *,
        allow_download: bool | None = None,
        internal_dtype: str | None = None,
    ) -> None:
        self.weights_path = resolve_inception_weights(weights_path, allow_download=allow_download)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = FeatureExtractorInceptionV3(
            INCEPTION_EXTRACTOR_NAME,
            list(INCEPTION_FEATURE_NAMES),
            feature_extractor_weights_path=str(self.weights_path),
            feature_extractor_internal_dtype=internal_dtype,
        )
        self.model.to(self.device).eval().requires_grad_(False)
        self.name = INCEPTION_EXTRACTOR_NAME
        self.internal_dtype = internal_dtype or "float32"
        self.feature_dim, self.num_classes = 2048, 1008

    @torch.no_grad()
    def features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(_to_uint8_rgb(images.to(self.device)))

    def describe(self) -> dict:
        return {
            "extractor": self.name,
            "feature_label": self.label,
            "is_label": self.is_label,
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "features": {"fid": INCEPTION_FEATURE_NAMES[0], "is": INCEPTION_FEATURE_NAMES[1]},
            "input": "uint8 RGB, resized to 299x299 by torch-fidelity (TF1-compatible bilinear)",
            "weights": str(self.weights_path),
            "weights_url": INCEPTION_WEIGHTS_URL,
            "internal_dtype": self.internal_dtype,
            "torch_fidelity_version": torch_fidelity.__version__,
        }


# --------------------------------------------------------------------------- the metric


ImagesLike = Tensor | np.ndarray | Iterable[Any]


def _batches(images: ImagesLike, batch_size: int) -> Iterable[Tensor]:
    """Image tensors of at most ``batch_size`` rows from a tensor/array [N, C, H, W] or an
    iterable of such batches (or of ``(images, labels, ...)`` tuples, as a DataLoader yields)."""
    for batch in [images] if isinstance(images, (Tensor, np.ndarray)) else images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        if not isinstance(batch, Tensor):
            raise TypeError(f"expected image tensors, got {type(batch).__name__}")
        if batch.dim() == 3:  # a single image
            batch = batch.unsqueeze(0)
        yield from batch.split(batch_size)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class GenerationMetrics:
    """FID against reference statistics, and IS, of generated images, over ``extractor``.

    Reference statistics come from ``reference_stats_path`` (an ``.npz`` with ``mu`` and
    ``sigma``, as written by :meth:`reference_statistics`, pytorch-fid or torch-fidelity) or from
    :meth:`reference_statistics`. Images go through the extractor in batches of ``batch_size``
    under ``torch.no_grad`` on ``extractor.device``. IS rows are shuffled with torch-fidelity's
    default permutation (``is_shuffle``/``rng_seed``), so the numbers match torch-fidelity's.
    """

    implementation = (
        "agr_suite.diffusion.metrics: FID = torch-fidelity fid_statistics_to_metric on float64 "
        "feature statistics; IS = torch-fidelity isc_features_to_metric (population std)"
    )

    def __init__(
        self,
        extractor: FeatureExtractor,
        reference_stats_path: str | os.PathLike | None = None,
        splits: int = 10,
        *,
        batch_size: int = 200,
        is_shuffle: bool = True,
        rng_seed: int = 2020,
    ) -> None:
        self.extractor, self.splits, self.batch_size = extractor, splits, batch_size
        self.is_shuffle, self.rng_seed = is_shuffle, rng_seed
        self.reference: dict[str, Any] | None = None
        self.reference_source: str | None = None  # "file", "cache" or "computed"
        self.num_samples: int | None = None
        if reference_stats_path is not None:
            path = Path(reference_stats_path)
            if not path.is_file():
                raise FileNotFoundError(f"reference statistics file {path} does not exist")
            self.reference = self._load(path, dataset=None)
            self.reference_source = "file"

    def extract(self, images: ImagesLike) -> tuple[np.ndarray, np.ndarray]:
        """(pool features [N, D] float32, logits [N, C] float32) as numpy arrays."""
        pools, logits = [], []
        device = getattr(self.extractor, "device", torch.device("cpu"))
        with torch.no_grad():
            for batch in _batches(images, self.batch_size):
                pool, logit = self.extractor.features(batch.to(device))
                pools.append(pool.detach().float().cpu().numpy())
                logits.append(logit.detach().float().cpu().numpy())
        if not pools:
            raise ValueError("no images were given")
        return np.concatenate(pools), np.concatenate(logits)

    def reference_cache_path(self, cache_dir: str | os.PathLike, dataset: str) -> Path:
        """``cache_dir/ref_<dataset>__<extractor name>.npz``."""
        return Path(cache_dir) / f"ref_{_safe(dataset)}__{_safe(self.extractor.name)}.npz"

    def _load(self, path: Path, dataset: str | None) -> dict[str, Any]:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise ValueError(f"{path} holds no 'mu' and 'sigma' arrays")
            stored_extractor = str(data["extractor"]) if "extractor" in data else None
            stored_dataset = str(data["dataset"]) if "dataset" in data else None
            ref = {
                "mu": data["mu"].astype(np.float64),
                "sigma": data["sigma"].astype(np.float64),
                "extractor": stored_extractor,
                "dataset": stored_dataset if stored_dataset is not None else path.stem,
                "num_samples": int(data["num_samples"]) if "num_samples" in data else None,
                "path": str(path),
            }
        if stored_extractor is not None and stored_extractor != self.extractor.name:
            raise ValueError(
                f"{path} holds statistics of extractor {stored_extractor!r}, not "
                f"{self.extractor.name!r}: FIDs across feature extractors are not comparable"
            )
        if dataset is not None and stored_dataset is not None and stored_dataset != dataset:
            raise ValueError(f"{path} holds statistics of {stored_dataset!r}, not {dataset!r}")
        return ref

    def reference_statistics(
        self, real_images: ImagesLike, cache_path: str | os.PathLike, *, dataset: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of the real set, read from ``cache_path`` when it exists (``real_images``
        is then not consumed), else computed and written there with ``np.savez`` together with
        the extractor name, the data set name and the number of images. ``cache_path`` is the
        ``.npz`` file, or a folder (existing, or named without a suffix) in which the file is
        ``ref_<dataset>__<extractor>.npz``. ``dataset`` defaults to the file's stem. A cached
        file of another extractor or data set raises ``ValueError``.
        The statistics become the reference of :meth:`compute`."""
        path = Path(cache_path)
        if path.is_dir() or not path.suffix:
            if dataset is None:
                raise ValueError("pass dataset= when cache_path is a folder")
            path = self.reference_cache_path(path, dataset)
        if path.is_file():
            self.reference = self._load(path, dataset)
            self.reference_source = "cache"
        else:  # np.savez stores the names and the count as 0-d arrays
            dataset = path.stem if dataset is None else dataset
            pool, _ = self.extract(real_images)
            mu, sigma = feature_statistics(pool)
            arrays = {
                "mu": mu,
                "sigma": sigma,
                "extractor": self.extractor.name,
                "dataset": dataset,
                "num_samples": len(pool),
            }
            write_atomic(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")
            self.reference = self._load(path, dataset)
            self.reference_source = "computed"
        return self.reference["mu"], self.reference["sigma"]

    def compute(self, generated_images: ImagesLike) -> dict[str, float]:
        """``{"fid", "is_mean", "is_std"}`` of the generated images (tensor/array or iterable of
        batches) against the reference statistics."""
        if self.reference is None:
            raise RuntimeError(
                "no reference statistics: pass reference_stats_path= or call "
                "reference_statistics() first"
            )
        pool, logits = self.extract(generated_images)
        self.num_samples = len(pool)
        mu, sigma = feature_statistics(pool)
        fid = frechet_distance(mu, sigma, self.reference["mu"], self.reference["sigma"])
        is_mean, is_std = inception_score(
            logits, self.splits, shuffle=self.is_shuffle, rng_seed=self.rng_seed
        )
        return {"fid": fid, "is_mean": is_mean, "is_std": is_std}

    def describe(self) -> dict:
        """What to record next to the numbers."""
        extractor = self.extractor.describe() if hasattr(self.extractor, "describe") else {}
        ref = self.reference or {}
        return {
            "implementation": self.implementation,
            "extractor": self.extractor.name,
            "feature_label": getattr(self.extractor, "label", f"FID ({self.extractor.name})"),
            "extractor_details": extractor,
            "num_samples": self.num_samples,
            "reference_set": ref.get("dataset"),
            "reference_samples": ref.get("num_samples"),
            "reference_stats_path": ref.get("path"),
            "reference_source": self.reference_source,
            "is_splits": self.splits,
            "is_std": "population std over splits (ddof=0), as torch-fidelity",
            "is_shuffle": {"enabled": self.is_shuffle, "rng_seed": self.rng_seed},
            "batch_size": self.batch_size,
        }
