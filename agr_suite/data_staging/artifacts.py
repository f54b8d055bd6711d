"""What each staging name stands for: the files to fetch, the folder they land in, how they
become what the reader reads, and whether the reader finds it offline.

Every URL, checksum, size, file and folder name is read from the reader modules when a record
is built (never copied here), so the readers stay the one source and a test can swap one of
their constants for a fixture's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.utils import check_integrity

from agr_suite.data_staging.files import RemoteFile, StagingError, file_problem
from agr_suite.diffusion import metrics
from agr_suite.images import cifar, tinyimagenet
from agr_suite.pretraining.text import wikitext

DATASET_NAMES = ("cifar10", "cifar100", "tinyimagenet", "wikitext2")
NAMES = (*DATASET_NAMES, "inception")


def default_data_dir() -> Path:
    """``paths.data_dir``'s default, from its one definition (agr_suite.core.config.PathsConfig:
    ``$AGR_DATA_DIR``, else ``data`` under the current folder)."""
    from omegaconf import OmegaConf

    from agr_suite.core.config import PathsConfig

    return Path(OmegaConf.structured(PathsConfig).data_dir)


@dataclass(frozen=True)
class Artifact:
    """One staging name. ``problem()`` is None when the reader finds it offline, else what is
    missing; ``unpack()`` turns the landed files into what the reader reads (idempotent)."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    folder: Path  # where the files land
    reads: str  # what the reader reads once staged
    folder_choice: str  # how a user moves ``folder``
    problem: Callable[[], str | None]
    unpack: Callable[[], None]

    @property
    def size(self) -> int:
        return sum(remote.size for remote in self.files)


def _nothing() -> None:
    pass


def _cifar(name: str, data_dir: Path) -> Artifact:
    cls = cifar.CLASSES[name]
    root = data_dir / name
    tarball = RemoteFile(cls.filename, (cls.url,), cifar.ARCHIVE_BYTES[name], md5=cls.tgz_md5)

    def problem() -> str | None:
        base = root / cls.base_folder
        extracted = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        missing = [file for file, _ in extracted if not (base / file).is_file()]
        failing = [
            file
            for file, md5 in extracted
            if file not in missing and not check_integrity(str(base / file), md5)
        ]
        if failing:  # the reader extracts the tarball only over missing files
            return (
                f"{', '.join(failing)} in {base}/ fail torchvision's MD5 check (corrupted): "
                f"remove {base}/ and stage again"
            )
        if not missing:
            return None
        archive = file_problem(root / cls.filename, tarball)
        if archive is None:
            return None  # the reader extracts a verified tarball itself
        if len(missing) == len(extracted):
            return f"neither {cls.filename} nor {cls.base_folder}/ is in {root}"
        return f"{base}/ lacks {', '.join(missing)}, and {archive}"

    def unpack() -> None:  # the reader's own extraction and torchvision's MD5 checks
        cifar.load(name, data_dir, download=False, train_tf=None, test_tf=None)

    return Artifact(
        name=name,
        description=f"{cifar.LABELS[name]}, torchvision's python tarball",
        files=(tarball,),
        folder=root,
        reads=f"{root / cls.base_folder}/",
        folder_choice="--data-dir",
        problem=problem,
        unpack=unpack,
    )


def _tinyimagenet(data_dir: Path) -> Artifact:
    archive = RemoteFile(
        tinyimagenet.ZIP_NAME, (tinyimagenet.URL,), tinyimagenet.ZIP_BYTES, md5=tinyimagenet.ZIP_MD5
    )
    root = data_dir / tinyimagenet.FOLDER

    def problem() -> str | None:
        missing = [rel for rel in tinyimagenet.REQUIRED if not (root / rel).exists()]
        if not missing:
            return None
        wrong = file_problem(data_dir / archive.filename, archive)
        if wrong is None:
            return None  # the reader extracts a verified zip itself
        return f"{root}/ lacks {', '.join(missing)}, and {wrong}"

    def unpack() -> None:  # extraction and the val split's class folders, by the reader
        tinyimagenet.build(data_dir, download=False, augment=False)

    return Artifact(
        name="tinyimagenet",
        description="TinyImageNet-200, the cs231n zip",
        files=(archive,),
        folder=data_dir,
        reads=f"{root}/",
        folder_choice="--data-dir",
        problem=problem,
        unpack=unpack,
    )


def add_new_files(archive: Path, folder: Path) -> None:
    """Extract ``archive`` (a zip) into ``folder`` through a temporary folder beside it,
    moving in only the files not already there: a file in place is never overwritten."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", dir=folder))
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp)
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dest = folder / path.relative_to(tmp)
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
    except (OSError, zipfile.BadZipFile) as error:
        raise StagingError(f"could not extract {archive} into {folder}: {error}") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wikitext2(data_dir: Path) -> Artifact:
    zips = {
        variant: RemoteFile(
            name, tuple(u.format(name=name) for u in wikitext.ZIP_URLS), size, sha256=sha
        )
        for variant, (name, size, sha) in wikitext.ZIPS.items()
    }

    def absent() -> list[str]:
        return [v for v in wikitext.VARIANTS if wikitext.local_source(data_dir, v) is None]

    def problem() -> str | None:
        missing = absent()
        if not missing:
            return None
        folders = ", ".join(f"{wikitext.VARIANTS[v][1]}/" for v in missing)
        return (
            f"variant {' and '.join(missing)} not under {data_dir} (no {folders}, parquet "
            "snapshot or datasets cache)"
        )

    def unpack() -> None:
        for variant in absent():
            archive = data_dir / zips[variant].filename
            if archive.is_file():
                add_new_files(archive, data_dir)

    return Artifact(
        name="wikitext2",
        description="WikiText-2, raw and tokens variants, the official zips",
        files=tuple(zips.values()),
        folder=data_dir,
        reads=", ".join(f"{data_dir / folder}/" for _, folder, _ in wikitext.VARIANTS.values()),
        folder_choice="--data-dir",
        problem=problem,
        unpack=unpack,
    )


def _inception(weights: Path | None) -> Artifact:
    remote = RemoteFile(
        metrics.INCEPTION_WEIGHTS_FILENAME,
        (metrics.INCEPTION_WEIGHTS_URL,),
        metrics.INCEPTION_WEIGHTS_BYTES,
        sha256=metrics.INCEPTION_WEIGHTS_SHA256,
    )
    cached = metrics.inception_weights_cache_path()
    path = cached if weights is None else weights

    def problem() -> str | None:
        wrong = file_problem(path, remote)
        if wrong and weights is not None and path != cached:
            wrong += f" (named by {metrics.CONFIG_KEY}; staging puts the file at {cached})"
        return wrong

    return Artifact(
        name="inception",
        description="Inception-v3 weights for FID/IS (torch-fidelity)",
        files=(remote,),
        folder=cached.parent,
        reads=str(path),
        folder_choice="TORCH_HOME (torch.hub's cache, where torch-fidelity looks)",
        problem=problem,
        unpack=_nothing,
    )


def artifact(name: str, data_dir: Path, *, inception_weights: Path | None = None) -> Artifact:
    """The record of ``name`` (one of :data:`NAMES`) for ``data_dir``; ``inception_weights``:
    a run's ``metrics.inception_weights`` file, checked instead of torch.hub's cache."""
    data_dir = Path(data_dir).expanduser().resolve()
    if name in cifar.CLASSES:
        return _cifar(name, data_dir)
    if name == "tinyimagenet":
        return _tinyimagenet(data_dir)
    if name == "wikitext2":
        return _wikitext2(data_dir)
    if name == "inception":
        return _inception(inception_weights)
    raise StagingError(f"unknown data set {name!r}: choose from {', '.join(NAMES)} or all")
