"""Text corpora as documents of sentences, and the embedded ``pydoc`` corpus.

A :class:`Corpus` maps split names to documents; a document is a list of sentences (plain
strings). Sentence-order prediction pairs never cross a document boundary, so what counts as a
document matters: an article for WikiText-2 (see :mod:`.wikitext`), a titled section of one
help topic for ``pydoc``.

``pydoc`` is CPython's own documentation text (``pydoc_data.topics.topics``: the help pages of
the language reference, about 65k words with repeats), so it runs offline anywhere. Its
train/test split is fixed: of the distinct documents in (topic, section) order, every
``PYDOC_TEST_EVERY``-th is a test document, whatever the run's seed.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "PYDOC_TEST_EVERY",
    "Corpus",
    "fixed_split",
    "paragraphs",
    "pydoc_corpus",
    "pydoc_documents",
    "split_sentences",
]

PYDOC_TEST_EVERY = 10

# A sentence ends at . ! or ? (possibly followed by a closing quote or bracket) when the next
# word starts like a sentence: a capital letter, a digit, or an opening quote or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])([\"')\]]?)\s+(?=[\"'(\[]?[A-Z0-9])")
_UNDERLINE = re.compile(r"([=*\-~^\"#+])\1{2,}")
_TABLE_LINE = re.compile(r"\s*[+|]")


@dataclass(frozen=True)
class Corpus:
    name: str
    splits: dict[str, list[list[str]]]
    """split -> documents -> sentences."""
    source: str
    """Where the text came from (a folder, a cache, a package), for the run's info."""

    def sentences(self, split: str) -> Iterator[str]:
        for document in self.splits[split]:
            yield from document

    def digest(self, *splits: str) -> str:
        """SHA-256 of the splits' text and document/sentence structure, in the order given
        (``digest("train", "test")`` covers both; one split hashes as it always did)."""
        hasher = hashlib.sha256()
        for index, split in enumerate(splits):
            if index:
                hasher.update(b"\x1d")  # group separator between splits
            for document in self.splits[split]:
                for sentence in document:
                    hasher.update(sentence.encode())
                    hasher.update(b"\n")
                hasher.update(b"\f")
        return hasher.hexdigest()


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph, whitespace collapsed (line breaks included)."""
    text = " ".join(paragraph.split())
    if not text:
        return []
    # re.split keeps the captured closing quote/bracket as its own item: glue it back on.
    parts = _SENTENCE_END.split(text)
    sentences = [parts[0]]
    for closer, sentence in zip(parts[1::2], parts[2::2]):
        sentences[-1] += closer
        sentences.append(sentence)
    return [s.strip() for s in sentences if s.strip()]


def paragraphs(lines: list[str]) -> Iterator[list[str]]:
    """The blocks of consecutive non-blank lines."""
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def _sections(text: str) -> Iterator[list[str]]:
    """Lines of each titled section of one help topic: a new section starts at every heading
    (a line followed by an underline of = * - ~ ...); the underlines themselves are dropped."""
    lines = text.splitlines()
    section: list[str] = []
    for i, line in enumerate(lines):
        if _UNDERLINE.fullmatch(line.strip()):
            continue
        is_heading = i + 1 < len(lines) and bool(_UNDERLINE.fullmatch(lines[i + 1].strip()))
        if is_heading and any(s.strip() for s in section):
            yield section
            section = []
        section.append(line)
    if any(s.strip() for s in section):
        yield section


def pydoc_documents() -> list[tuple[str, list[str]]]:
    """``(id, sentences)`` of every section of every pydoc help topic, in (topic, section)
    order. Tables (lines starting with ``+`` or ``|``) are left out; an indented code or
    grammar block is one "sentence"."""
    from pydoc_data.topics import topics

    documents = []
    for topic in sorted(topics):
        for index, lines in enumerate(_sections(topics[topic])):
            sentences: list[str] = []
            for block in paragraphs(lines):
                if all(_TABLE_LINE.match(line) for line in block):
                    continue
                if block[0].startswith(" "):  # code, grammar or an indented quote
                    sentences.append(" ".join(" ".join(block).split()))
                else:
                    sentences.extend(split_sentences(" ".join(block)))
            if sentences:
                documents.append((f"{topic}/{index}", sentences))
    return documents


def pydoc_corpus() -> Corpus:
    """The embedded corpus with its fixed split: every 10th document is a test document, after
    dropping documents that repeat an earlier one word for word (the help topics share many
    sections: "compound" holds the "if", "while", "try" ... sections, "specialnames" the
    "customization" ones), so no test document is also a training document."""
    documents = (sentences for _, sentences in pydoc_documents())
    return Corpus(
        name="pydoc",
        splits=fixed_split(documents, PYDOC_TEST_EVERY),
        source=f"pydoc_data.topics of Python {python_version()}",
    )


def fixed_split(documents: Iterable[list[str]], every: int) -> dict[str, list[list[str]]]:
    """``{"train": ..., "test": ...}``: the documents in order, each kept once (a later copy
    of an earlier one, sentence for sentence, is dropped), every ``every``-th a test one."""
    unique: dict[tuple[str, ...], list[str]] = {}
    for sentences in documents:
        unique.setdefault(tuple(sentences), sentences)
    train, test = [], []
    for index, sentences in enumerate(unique.values()):
        (test if index % every == every - 1 else train).append(sentences)
    return {"train": train, "test": test}


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))
