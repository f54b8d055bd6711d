"""agr-suite: the experiment suite that reproduces the AGR paper's tables, on top of the AGR
library (``agr``, the distribution torch-agr in ``lib/``). docs/layout.md draws the packages
and the data flow.

Importing the package registers every family's config schema (each family's ``config.py``),
so a config read anywhere finds its data set, model and metrics kinds.
"""

from agr_suite.classification import config as _classification_config  # noqa: F401
from agr_suite.diffusion import config as _diffusion_config  # noqa: F401
from agr_suite.images import config as _images_config  # noqa: F401
from agr_suite.pretraining import config as _pretraining_config  # noqa: F401
