"""WikiText-2 (Merity et al., 2016) as a :class:`~.corpus.Corpus` of articles.

Two variants: ``raw`` (``wikitext-2-raw-v1``, the original text) and ``tokens``
(``wikitext-2-v1``: pre-tokenised, rare words replaced by ``<unk>``; the files the authors'
ALBERT code reads). For a variant, the first of these found under ``data_dir`` is read:

1. the classic files: ``wikitext-2-raw/wiki.{train,valid,test}.raw`` or
   ``wikitext-2/wiki.{train,valid,test}.tokens`` (what the official zips extract to);
2. a Hub snapshot in parquet: ``wikitext/<config>/{train,validation,test}-*.parquet``;
3. the Hugging Face ``datasets`` cache in ``<data_dir>/huggingface`` (``Salesforce/wikitext``,
   config ``<config>``), filled on first use when ``download`` is true.

Every format holds the same lines: `` = Title = `` starts an article, `` = = Section = = ``
(and deeper) headings are dropped, every other non-blank line is a paragraph, split into
sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from agr_suite.core.errors import DatasetMissingError
from agr_suite.pretraining.text.corpus import Corpus, split_sentences

__all__ = [
    "HUB_NAME",
    "SPLITS",
    "VARIANTS",
    "ZIPS",
    "ZIP_URLS",
    "load_wikitext2",
    "local_source",
    "parse_articles",
]

HUB_NAME = "Salesforce/wikitext"
SPLITS = ("train", "validation", "test")
_CLASSIC_SPLIT = {"train": "train", "validation": "valid", "test": "test"}
VARIANTS = {
    # variant: (Hub config, classic folder, classic file suffix)
    "raw": ("wikitext-2-raw-v1", "wikitext-2-raw", "raw"),
    "tokens": ("wikitext-2-v1", "wikitext-2", "tokens"),
}
# The official zips, which extract to the classic files: variant -> (file, bytes, SHA-256).
# Bytes and SHA-256 as Hugging Face datasets recorded them for these zips
# (huggingface/datasets, datasets/wikitext/dataset_infos.json, download_checksums).
ZIPS = {
    "raw": (
        "wikitext-2-raw-v1.zip",
        4_721_645,
        "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
    ),
    "tokens": (
        "wikitext-2-v1.zip",
        4_475_746,
        "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
    ),
}
# Where they are served, tried in order ({name}: the zip's file name): the author's site, then
# the original Salesforce S3 bucket (which answers 403 nowadays).
ZIP_URLS = (
    "https://wikitext.smerity.com/{name}",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/{name}",
)
_TITLE = re.compile(r"= (?!=).*(?<!=) =")
_HEADING = re.compile(r"(= )+.*( =)+")


def parse_articles(lines: Iterable[str]) -> list[list[str]]:
    """Articles (lists of sentences) from WikiText lines; text before the first title counts
    as an article of its own."""
    articles: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if _HEADING.fullmatch(text):
            if _TITLE.fullmatch(text) and current:
                articles.append(current)
                current = []
            continue
        current.extend(split_sentences(text))
    if current:
        articles.append(current)
    return articles


def _classic_files(data_dir: Path, variant: str) -> dict[str, Path]:
    _, folder, suffix = VARIANTS[variant]
    return {split: data_dir / folder / f"wiki.{_CLASSIC_SPLIT[split]}.{suffix}" for split in SPLITS}


def _parquet_files(data_dir: Path, variant: str) -> dict[str, list[Path]]:
    folder = data_dir / "wikitext" / VARIANTS[variant][0]
    return {split: sorted(folder.glob(f"{split}-*.parquet")) for split in SPLITS}


def _hub_cache(data_dir: Path) -> Path:
    return data_dir / "huggingface"


def _hub_cached(data_dir: Path, variant: str) -> bool:
    folder = _hub_cache(data_dir) / HUB_NAME.replace("/", "___") / VARIANTS[variant][0]
    return folder.is_dir() and any(folder.iterdir())


def local_source(data_dir: str | Path, variant: str) -> str | None:
    """Where :func:`load_wikitext2` reads ``variant`` from without network (the classic
    files, the parquet snapshot or a filled datasets cache), or None when none has it."""
    root = Path(data_dir).expanduser().resolve()
    classic = _classic_files(root, variant)
    if all(path.is_file() for path in classic.values()):
        return str(classic["train"].parent)
    parquet = _parquet_files(root, variant)
    if all(parquet.values()):
        return str(parquet["train"][0].parent)
    if _hub_cached(root, variant):
        return f"{_hub_cache(root)} ({HUB_NAME}, {VARIANTS[variant][0]})"
    return None


def _read_parquet(paths: list[Path]) -> list[str]:
    import pyarrow.parquet as pq

    lines: list[str] = []
    for path in paths:
        lines.extend(pq.read_table(path, columns=["text"]).column("text").to_pylist())
    return lines


def _read_hub(data_dir: Path, variant: str) -> dict[str, list[str]]:
    import datasets

    loaded = datasets.load_dataset(
        HUB_NAME, VARIANTS[variant][0], cache_dir=str(_hub_cache(data_dir))
    )
    return {split: list(loaded[split]["text"]) for split in SPLITS}


def _missing_message(data_dir: Path, variant: str, found: str, error: BaseException | None) -> str:
    config, folder, suffix = VARIANTS[variant]
    classic = data_dir / folder / f"wiki.{{train,valid,test}}.{suffix}"
    parquet = data_dir / "wikitext" / config / "{train,validation,test}-*.parquet"
    failed = f" The download attempt ended in {type(error).__name__}: {error}." if error else ""
    return (
        f"WikiText-2 ({variant}) not found under {data_dir}: looked for {classic}, {parquet} "
        f"and the Hugging Face datasets cache {_hub_cache(data_dir)} ({HUB_NAME}, {config})"
        f"{found}.{failed} To get it, run with `dataset.download=true` on a machine with network "
        f"access (it fetches {HUB_NAME}/{config}, a few MB, into that cache), or stage it "
        f"yourself: unzip {config}.zip in {data_dir} (it extracts to {folder}/), or run "
        f"`huggingface-cli download {HUB_NAME} --repo-type dataset --include '{config}/*' "
        f"--local-dir {data_dir / 'wikitext'}`."
    )


def load_wikitext2(data_dir: str | Path, *, variant: str = "raw", download: bool = False) -> Corpus:
    """The ``train``, ``validation`` and ``test`` articles of WikiText-2; DatasetMissingError
    (saying where it looked and how to stage the data) when no source has it."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not valid; choose one of {', '.join(VARIANTS)}")
    root = Path(data_dir).expanduser().resolve()
    lines: dict[str, list[str]] | None = None
    found = ""

    classic = _classic_files(root, variant)
    parquet = _parquet_files(root, variant)
    if all(path.is_file() for path in classic.values()):
        source = str(classic["train"].parent)
        lines = {s: p.read_text(encoding="utf-8").splitlines() for s, p in classic.items()}
    elif all(parquet.values()):
        source = str(parquet["train"][0].parent)
        lines = {split: _read_parquet(paths) for split, paths in parquet.items()}
    else:
        partial = [str(p) for p in classic.values() if p.is_file()]
        partial += [str(p) for paths in parquet.values() for p in paths]
        if partial:
            found = f" (found only {', '.join(partial)}: every split is needed)"

    error: BaseException | None = None
    if lines is None and (download or _hub_cached(root, variant)):
        source = f"{_hub_cache(root)} ({HUB_NAME}, {VARIANTS[variant][0]})"
        try:
            lines = _read_hub(root, variant)
        except Exception as caught:  # offline, no network, partial cache: all the same to us
            error = caught
    if lines is None:
        raise DatasetMissingError(_missing_message(root, variant, found, error)) from error
    return Corpus(
        name=f"wikitext2-{variant}",
        splits={split: parse_articles(lines[split]) for split in SPLITS},
        source=source,
    )
