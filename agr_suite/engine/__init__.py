"""The training engine: loops, devices, precision, checkpoints and logging; it knows
nothing of images or text (tasks do)."""

from .checkpoint import CheckpointError
from .run_folder import RunFolder
from .trainer import DivergedError, train

__all__ = ["CheckpointError", "DivergedError", "RunFolder", "train"]
