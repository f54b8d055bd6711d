"""A new optimizer family and a new image data set are each one record plus one YAML file:
here both are added from outside the package (the record registered, the YAML in a folder on
Hydra's search path) and a run trains with them, without another file of the suite changed."""

from __future__ import annotations

import hashlib

import pytest
import torch

import agr
from agr.optim import FAMILIES, Family
from agr_suite import images
from agr_suite.core.config import compose
from agr_suite.engine import train
from agr_suite.images.base import DatasetInfo, ImageDataset
from agr_suite.registry import build_task

RMSPROP = Family(
    lambda: torch.optim.RMSprop,
    dict(lr=1e-2, weight_decay=0.0, eps=1e-8, momentum=0.0),
    ("auto", "foreach", "loop"),
    lambda device_type: "foreach",
)


class Stripes(torch.utils.data.Dataset):
    """Vertical or horizontal stripes: 2 classes a model can learn from 8x8 pixels."""

    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (count,), generator=generator)
        stripes = (torch.arange(8) % 2).float().expand(8, 8)
        noise = 0.1 * torch.randn(count, 1, 8, 8, generator=generator)
        self.images = torch.stack([stripes if y else stripes.T for y in self.labels])[:, None]
        self.images = self.images + noise
        self.transform = lambda image: image

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


def _stripes_digest(train: Stripes, test: Stripes) -> str:
    return hashlib.sha256(
        train.images.numpy().tobytes() + test.images.numpy().tobytes()
    ).hexdigest()


STRIPES = ImageDataset(
    DatasetInfo("stripes", 2, 8, 1, (0.5,), (0.5,), 64, 32),
    lambda data_dir, **_: (Stripes(64, 0), Stripes(32, 1)),
    _stripes_digest,
    Stripes,
    lambda split: (split.images, split.labels),
    pil=False,
)


@pytest.fixture
def extended(tmp_path, monkeypatch):
    """The two records registered and their YAML files in a search-path folder."""
    monkeypatch.setitem(FAMILIES, "rmsprop", RMSPROP)
    monkeypatch.setitem(images.DATASETS, "stripes", STRIPES)
    (tmp_path / "configs" / "optimizer").mkdir(parents=True)
    (tmp_path / "configs" / "dataset").mkdir()
    (tmp_path / "configs" / "optimizer" / "rmsprop_agr.yaml").write_text("name: rmsprop_agr\n")
    (tmp_path / "configs" / "dataset" / "stripes.yaml").write_text(
        "defaults:\n  - /agr_suite_schema/dataset/image@_here_\n  - _self_\n"
        "name: stripes\ndownload: false\n"
    )
    return [f"hydra.searchpath=[file://{tmp_path / 'configs'}]"]


def test_a_new_optimizer_family_and_data_set_train(extended, tmp_path):
    cfg = compose(
        [
            *extended,
            "optimizer=rmsprop_agr",
            "dataset=stripes",
            "model=resnet18",
            "model.base_width=4",
            "trainer.devices=cpu",
            "trainer.num_workers=0",
            "trainer.batch_size=16",
            "trainer.epochs=1",
            "scheduler=constant",
        ]
    )
    assert cfg.optimizer.name == "rmsprop_agr" and cfg.dataset.name == "stripes"
    results = train(cfg, tmp_path / "run", build_task)
    assert results["status"] == "completed"
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert "alpha" in last["optimizer"]["param_groups"][0]  # RMSprop's own setting
    assert results["info"]["data_sha256"] == _stripes_digest(Stripes(64, 0), Stripes(32, 1))
    assert results["info"]["num_classes"] == 2 and results["info"]["train_size"] == 64


def test_the_new_family_is_checked_and_built_like_the_others(extended):
    model = torch.nn.Linear(3, 2)
    optimizer = agr.build_optimizer("rmsprop_agr", model, momentum=0.5)
    assert isinstance(optimizer, torch.optim.RMSprop) and agr.handle_of(optimizer) is not None
    assert optimizer.defaults["momentum"] == 0.5 and optimizer.defaults["foreach"] is True
    assert "rmsprop_agr" in agr.optimizer_names()
    with pytest.raises(agr.optim.OptionError, match="rmsprop takes no betas"):
        agr.check_options("rmsprop", betas=(0.9, 0.99))
