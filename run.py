"""Train one run: `python run.py optimizer=adamw_agr model=vit [key=value ...]`.

Composes the Hydra config (configs/), validates it, and hands it to the engine. The run
folder is derived from the config (paths.runs/experiment_name/dataset-model-optimizer/seedN),
so a restarted or requeued job finds and resumes its own checkpoint. `python run.py --help`
lists the config groups and their choices.
"""

from __future__ import annotations

import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from agr.config import ConfigError, validate
from agr.engine import CheckpointError, RunFolder, train

# Errors whose message says what to do: shown without a traceback, exit code 2.
try:
    from agr.data import DatasetMissingError
except ImportError:  # pragma: no cover - the data package is part of the suite
    DatasetMissingError = FileNotFoundError

from agr.metrics.generation import InceptionWeightsMissingError

USER_ERRORS = (ConfigError, CheckpointError, DatasetMissingError, InceptionWeightsMissingError)


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        validate(resolved)
        folder = RunFolder(HydraConfig.get().runtime.output_dir)
        if folder.status() == "completed":
            if not resolved["overwrite"]:
                print(f"{folder.path}: already completed; skipping (overwrite=true reruns it)")
                return folder.read_results()
            if _is_main_process():
                stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
                folder.path.rename(folder.path.with_name(f"{folder.path.name}.replaced-{stamp}"))
        if _is_main_process():
            folder.path.mkdir(parents=True, exist_ok=True)
            folder.config.write_text(OmegaConf.to_yaml(resolved))
        return train(resolved, folder.path)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
