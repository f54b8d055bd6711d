"""agr-suite: the experiment suite that reproduces the AGR paper's tables, on top of the AGR
library (``agr``, the distribution torch-agr in ``lib/``). docs/layout.md draws the packages
and the data flow.

Importing the package (any module of it) registers what a composition of ``configs/`` needs,
and nothing outside the suite sees it, since no Hydra plugin registers it: the run config's
schema in Hydra's ConfigStore (``agr_suite_schema``, agr_suite.core.config), every family's
data set, model and metrics kinds (each family's ``config.py``), the run folder's resolver
``${agr.folder_suffix:}`` (agr_suite.core.run_identity) and the help's group list.
"""

from agr_suite.classification import config as _classification_config  # noqa: F401
from agr_suite.core import run_identity as _run_identity  # noqa: F401
from agr_suite.diffusion import config as _diffusion_config  # noqa: F401
from agr_suite.images import config as _images_config  # noqa: F401
from agr_suite.pretraining import config as _pretraining_config  # noqa: F401
