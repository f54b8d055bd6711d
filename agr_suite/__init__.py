"""agr-suite: the experiment suite that reproduces the AGR paper's tables, on top of the AGR
library (``agr``, the distribution torch-agr in ``lib/``).

    config.py        the typed config schema: every setting's type, default, check, source
    engine/          the training loop and what it needs from a task (task.py): devices,
                     precision, checkpoints, run folder, logging, the EMA of the weights
    tasks.py         the launcher's registry: model.task -> the family that builds it
    classification/  Table 2: task, models, metrics
    generation/      Table 1: task, data, UNet, diffusion process, FID/IS
    pretraining/     Table 3: task, text data, ALBERT, SOP/MLM metrics
    images/          the image data sets both image families read; the device loader
    optimizer_config.py  the config's optimizer settings -> agr.build_optimizer
    preflight.py, errors.py, atomic.py  the machine's checks, exit codes, whole-file writes
    table_spec.py, results.py, verdicts.py, claims.py: tables/ specs -> runs -> tables -> README
    slurm.py, local_pool.py: the Slurm and local launchers' bookkeeping

The library never imports the suite; the suite imports the library as ``agr``.
"""
