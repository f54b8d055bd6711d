"""Stage every data set and weight file the paper's tables read, before any run needs them.

    python -m agr_suite.data_staging list
    python -m agr_suite.data_staging stage [NAMES...] [--data-dir DIR] [--mirror URL_OR_FOLDER]
    python -m agr_suite.data_staging check [NAMES...] [--data-dir DIR]

A run downloads what is missing at first use, which an offline compute node cannot: this
package fetches it beforehand (from the official sources or a site's mirror), verifies each
file's size and checksum, and lands it where the readers look, in the form they read. The
readers (agr_suite.images.cifar, .tinyimagenet, agr_suite.pretraining.text.wikitext,
agr_suite.diffusion.metrics) hold every URL, checksum and file name; :mod:`.artifacts` only
reads them. :func:`needs_of` maps a composed run config to the names it needs and
:func:`missing_data` says which of them are not there (agr_suite.launch.data_check uses both
before a table's runs are submitted).
"""

from agr_suite.data_staging.artifacts import NAMES, default_data_dir
from agr_suite.data_staging.needs import (
    DataNeeds,
    missing_data,
    needs_of,
    problems,
    stage_command,
)

__all__ = [
    "NAMES",
    "DataNeeds",
    "default_data_dir",
    "missing_data",
    "needs_of",
    "problems",
    "stage_command",
]
