"""The training engine: loops, devices, precision, checkpoints and logging; it knows
nothing of images or text (tasks do)."""

from agr_suite.engine.checkpoint import CheckpointError
from agr_suite.engine.divergence import DivergedError
from agr_suite.engine.run_folder import RunFolder
from agr_suite.engine.trainer import train

__all__ = ["CheckpointError", "DivergedError", "RunFolder", "train"]
