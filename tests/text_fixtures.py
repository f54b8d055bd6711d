"""Small WikiText-2 copies in the real on-disk formats: the classic ``wiki.*.raw`` /
``wiki.*.tokens`` files and the Hub's parquet files. The fixture knows every article's
sentences by construction, so readers are checked against them, not against themselves."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "river valley north city bridge music album song record band station railway line "
    "army battle castle king church school village island ship storm season game team "
    "player league final coach hospital garden museum painting author novel story film "
    "century history market harbour tower road field mountain lake forest"
).split()
SPLITS = {"train": 4, "validation": 2, "test": 2}  # articles per split
CLASSIC = {"train": "train", "validation": "valid", "test": "test"}


def _sentence(rng: random.Random, tokens: bool) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
    words[0] = words[0].capitalize()
    if rng.random() < 0.3:  # a hyphenated compound and a decimal, as WikiText writes them
        words.insert(2, "long @-@ term" if tokens else "long-term")
        words.append("2 @.@ 5" if tokens else "2.5")
    text = " ".join(words)
    return text + (" ." if tokens else ".")


def articles(split: str, variant: str = "raw") -> list[dict]:
    """[{title, sections: [(heading or None, [paragraph sentences...])]}] of one split."""
    rng = random.Random(f"{split}-{variant}")
    result = []
    for index in range(SPLITS[split]):
        sections = []
        for section in range(2):
            heading = None if section == 0 else f"Section {index}"
            paragraphs = [[_sentence(rng, variant == "tokens") for _ in range(4)] for _ in range(3)]
            sections.append((heading, paragraphs))
        result.append({"title": f"Article {split} {index}", "sections": sections})
    return result


def expected_sentences(split: str, variant: str = "raw") -> list[list[str]]:
    """Each article's sentences in order: headings dropped, paragraphs concatenated."""
    return [
        [s for _, paragraphs in a["sections"] for p in paragraphs for s in p]
        for a in articles(split, variant)
    ]


def wikitext_lines(split: str, variant: str = "raw") -> list[str]:
    """The file's lines (with their newlines) as WikiText writes them: a leading space, a
    trailing space, and a blank " " line around every heading and paragraph."""
    lines = [" \n"]
    for article in articles(split, variant):
        lines += [f" = {article['title']} = \n", " \n"]
        for heading, paragraphs in article["sections"]:
            if heading:
                lines += [f" = = {heading} = = \n", " \n"]
            for paragraph in paragraphs:
                lines += [" " + " ".join(paragraph) + " \n", " \n"]
    return lines


def write_classic(data_dir: Path, variant: str = "raw") -> Path:
    folder = data_dir / ("wikitext-2-raw" if variant == "raw" else "wikitext-2")
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "raw" if variant == "raw" else "tokens"
    for split, name in CLASSIC.items():
        (folder / f"wiki.{name}.{suffix}").write_text(
            "".join(wikitext_lines(split, variant)), encoding="utf-8"
        )
    return folder


def write_parquet(data_dir: Path, variant: str = "raw") -> Path:
    """The Hub layout: one row per line, blank lines as "" (as in Salesforce/wikitext)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = "wikitext-2-raw-v1" if variant == "raw" else "wikitext-2-v1"
    folder = data_dir / "wikitext" / config
    folder.mkdir(parents=True, exist_ok=True)
    for split in CLASSIC:
        rows = ["" if not line.strip() else line for line in wikitext_lines(split, variant)]
        pq.write_table(pa.table({"text": rows}), folder / f"{split}-00000-of-00001.parquet")
    return folder
