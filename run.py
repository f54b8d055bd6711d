"""Train one run: `python run.py optimizer=adamw_agr model=vit [key=value ...]`.

Composes the Hydra config (configs/), validates it, and hands it to the engine. The run
folder is derived from the config (paths.runs/experiment_name/dataset-model-optimizer-HASH/seedN,
HASH of every setting that can change the run's numbers: agr_suite.core.run_identity), so a
restarted or requeued job finds and resumes its own checkpoint, and a folder whose recorded
config differs in such a setting is never skipped or resumed (exit 2 naming the settings).
Besides the run's own files, the folder keeps each invocation's overrides (invocations.yaml)
and what it printed (run.log): agr_suite/engine/run_folder.py. `python run.py --help` lists
the config groups and their choices.

Exit codes: 0 done (or already completed), 2 bad input (a message, no traceback, nothing of
an earlier run touched: core/errors.py), 1 a run that failed (results.json says why; a diverged
run's message says at which epoch and step).
"""

from __future__ import annotations

import os
import sys
import time

import hydra
from omegaconf import DictConfig

# Importing the suite registers what composing configs/ needs (the schema, the run folder's
# resolver, the help's group list); no Hydra plugin does. The engine and the tasks are imported
# by main: --help, --cfg and a refused command line need only the config's modules.
from agr_suite.core.config import composition_error
from agr_suite.core.errors import exit_on_user_error


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from agr_suite.core.config import load
    from agr_suite.core.errors import ConfigError
    from agr_suite.core.run_identity import recorded_differences
    from agr_suite.engine import DivergedError, RunFolder, train
    from agr_suite.engine.preflight import preflight
    from agr_suite.registry import build_task

    with exit_on_user_error():
        run_cfg = load(cfg)  # typed and checked: a bad value exits 2 naming its key
        hydra_cfg = HydraConfig.get()
        folder = RunFolder(hydra_cfg.runtime.output_dir)
        changed = recorded_differences(folder.config, run_cfg)
        if changed and not run_cfg.overwrite:
            raise ConfigError(another_config(folder.path, changed))
        if folder.status() == "completed" and not run_cfg.overwrite:
            print(f"{folder.path}: already completed; skipping (overwrite=true reruns it)")
            return folder.read_results()
        preflight(run_cfg, is_main=_is_main_process())
        replace = changed or folder.status() == "completed"
        if run_cfg.overwrite and replace and _is_main_process():
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            folder.path.rename(folder.path.with_name(f"{folder.path.name}.replaced-{stamp}"))
        if _is_main_process():
            folder.path.mkdir(parents=True, exist_ok=True)
            folder.config.write_text(OmegaConf.to_yaml(OmegaConf.structured(run_cfg)))
            # provenance: this invocation's overrides, after the earlier ones' (a resume)
            folder.record_invocation(list(hydra_cfg.overrides.task))
    # what the run prints goes to run.log too (rank 0's: the other ranks' is theirs alone)
    command = " ".join(["python run.py", *hydra_cfg.overrides.task])
    with folder.output_logged(command, enabled=_is_main_process()), exit_on_user_error():
        try:
            return train(run_cfg, folder.path, build_task)
        except DivergedError as error:
            print(
                f"run failed: {error}\n{folder.results}: status failed (the tables list this "
                "run with its reason, never averaging it)",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)


def another_config(path, changed: list[str]) -> str:
    listed = "\n".join(f"  {line}" for line in changed)
    return (
        f"{path} holds a run of another config; these settings, which can change its "
        f"numbers, differ (recorded -> asked for):\n{listed}\nRunning here would skip or "
        "resume that run under the new settings. Give the new config its own folder "
        "(folder_hash=true, or another experiment_name), or replace the old run with "
        "overwrite=true (its folder is kept as <folder>.replaced-<time>)."
    )


def check_composes(argv: list[str]) -> None:
    """Compose the config of the command line's overrides (a sweep's first value of each swept
    key) before Hydra runs: an unknown group choice or key, or a malformed override, is bad
    input and exits 2 with Hydra's message, where Hydra itself would exit 1."""
    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in argv):
        return  # --help, --cfg, --config-dir ...: Hydra's own modes
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [arg for arg in argv if not arg.startswith("-")]
    with exit_on_user_error():
        try:
            parsed = OverridesParser.create().parse_overrides(overrides)
            first = [
                f"{o.get_key_element()}={next(o.sweep_string_iterator())}"
                if o.is_sweep_override()
                else o.input_line
                for o in parsed
            ]
            configs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
            with initialize_config_dir(config_dir=configs, version_base="1.3"):
                compose("config", overrides=first, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as error:
            raise composition_error(error) from None


if __name__ == "__main__":
    check_composes(sys.argv[1:])
    main()
