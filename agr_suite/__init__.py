"""agr-suite: the experiment suite that reproduces the AGR paper's tables, on top of the AGR
library (``agr``, the distribution torch-agr in ``lib/``).

    engine/       the training loop: devices, precision, checkpoints, run folder, logging
    tasks/        classification, diffusion, pretraining: what each task hands the engine
    data/         dataset readers and the embedded datasets (images, generation, text/)
    models/       CIFAR ResNet/VGG, timm ViT/ConvNeXt, diffusers UNets, ALBERT
    metrics/      accuracy, FID/IS, the digits CNN, SOP/MLM
    config.py     config checks; preflight.py the machine's; errors.py one exit path
    table_spec.py, results.py, verdicts.py, claims.py: specs -> runs -> tables -> README
    slurm.py, local_pool.py: the Slurm and local launchers' bookkeeping

The library never imports the suite; the suite imports the library as ``agr``.
"""
