"""Image classification (Table 2): ResNet/VGG/ViT/ConvNeXt on CIFAR-100, TinyImageNet and the
embedded digits, cross-entropy, top-1/top-5.

    task.py     the task's parts for the engine (data, model, loss, evaluator)
    models/     CIFAR ResNet/VGG, timm ViT/ConvNeXt for small inputs (build_model)
    metrics.py  top-1/top-5 accuracy and loss, summed over ranks

The images themselves come from :mod:`agr_suite.images`, which image generation shares.
"""
