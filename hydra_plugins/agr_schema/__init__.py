"""Registers the suite's typed config schema (agr_suite.core.config) in Hydra's ConfigStore and
the run folder's resolver (agr_suite.core.run_identity).

Hydra imports every module under ``hydra_plugins`` when it starts, so any composition of
``configs/`` (run.py, scripts/reproduce.py, the Slurm workers, ``hydra.compose`` in tests)
finds ``/schema/...`` without importing the suite first."""

import agr_suite.core.config  # noqa: F401  (registers on import)
import agr_suite.core.run_identity  # noqa: F401, E402  (the ${agr.folder_suffix:} resolver)
