"""What every dataset reader shares: its description and the error for absent data."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset; ``train_size``/``test_size`` are the official split sizes."""

    name: str
    num_classes: int
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int


class DatasetMissingError(UserError, FileNotFoundError):
    """The dataset's files are absent (or corrupted) and could not be downloaded."""
