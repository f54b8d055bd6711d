"""Image generation (Table 1): a DDPM UNet on CIFAR-10 (or the embedded digits), scored by FID
and IS of DDIM samples.

    task.py             the task's parts for the engine (loss, EMA state, sampling evaluation)
    data.py             the training images in [-1, 1] and the FID reference set
    unet.py             the UNets (diffusers' UNet2DModel, the authors' architecture and init)
    diffusion.py        the noising, the loss, DDIM sampling, sample grids
    metrics.py          FID/IS (torch-fidelity's Inception-v3), reference statistics
    digits_features.py  the small CNN that scores digits samples (labelled as such)

The EMA of the weights is generic and lives in :mod:`agr_suite.engine.ema`.
"""
