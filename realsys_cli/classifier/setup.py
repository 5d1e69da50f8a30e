"""What training and every later use of a classifier share: sizes, the model, the steps.

A trained workdir holds the resolved config and, in each checkpoint, the data facts the model was
built from (class names, channels, sizes, pixel statistics), so `evaluate`, `classify`, `fool`
and the GAN's judge rebuild exactly the trained network from the workdir alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.classifier.augment import AugmentSpec, PixelStats
from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.classifier.steps import ClassifierSteps
from realsys_cli.data.dataset import Dataset
from realsys_cli.errors import ConfigError, DatasetError
from realsys_cli.models import build_classifier, min_image_size
from realsys_cli.training import optim

DEFAULT_VARIABLE_SIZE = {"alexnet": 224, "alexnet-small": 64, "lenet": 28}


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """The facts about the data that the model and its input pipeline are built from."""

    class_names: tuple[str, ...]
    in_channels: int
    image_size: int  # model input side
    resize_size: int  # loader output side (>= image_size; the crop takes the rest)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataFacts:
        return cls(tuple(d["class_names"]), int(d["in_channels"]), int(d["image_size"]),
                   int(d["resize_size"]))


def data_facts(cfg: ClassifierConfig, dataset: Dataset) -> DataFacts:
    if dataset.kind != "image":
        raise DatasetError(f"{dataset.name} is a video dataset; a classifier needs images")
    h, w, c = dataset.element_shape
    native = h if (h is not None and h == w) else None
    image_size = cfg.image_size or native or DEFAULT_VARIABLE_SIZE.get(cfg.model, 224)
    resize_size = cfg.resize_size or (native if native is not None
                                      else round(image_size * 256 / 224))
    if resize_size < image_size:
        raise ConfigError(f"resize_size {resize_size} is smaller than image_size {image_size}")
    minimum = min_image_size(cfg.model)
    if image_size < minimum:
        raise ConfigError(
            f"image size {image_size} px is too small for {cfg.model} (needs >= {minimum} px); "
            "choose a smaller model (lenet, alexnet-small) or --set image_size=..."
        )
    if c not in (1, 3):
        raise DatasetError(f"{dataset.name} has {c} channels; realsys needs 1 or 3")
    if dataset.num_classes < 2:
        raise DatasetError(f"{dataset.name} has {dataset.num_classes} class; need at least 2")
    return DataFacts(dataset.class_names, int(c), int(image_size), int(resize_size))


def make_model(cfg: ClassifierConfig, facts: DataFacts) -> nnx.Module:
    options: dict[str, Any] = {}
    if cfg.init:
        options["init"] = cfg.init
    if cfg.dtype == "bfloat16":
        options["dtype"] = jnp.bfloat16
    return build_classifier(
        cfg.model,
        num_classes=len(facts.class_names),
        in_channels=facts.in_channels,
        image_size=facts.image_size,
        rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1),
        **options,
    )


def optimizer_spec(cfg: ClassifierConfig, total_steps: int) -> optim.OptimizerSpec:
    return optim.OptimizerSpec(
        name=cfg.optimizer,
        learning_rate=cfg.learning_rate,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        warmup_steps=min(cfg.warmup_steps, max(total_steps - 1, 0)),
        total_steps=total_steps,
        grad_clip_norm=cfg.grad_clip_norm,
    )


def make_steps(cfg: ClassifierConfig, facts: DataFacts, model: nnx.Module, stats: PixelStats,
               total_steps: int) -> ClassifierSteps:
    spec = optimizer_spec(cfg, total_steps)
    return ClassifierSteps(
        graphdef=nnx.graphdef(model),
        tx=optim.build_optimizer(spec),
        schedule=optim.learning_rate_schedule(spec),
        augment=AugmentSpec(facts.image_size, cfg.crop_padding, cfg.flip, cfg.pca_noise),
        stats=stats,
        num_classes=len(facts.class_names),
        label_smoothing=cfg.label_smoothing,
        ten_crop=cfg.ten_crop,
    )


def sample_stats(source: Any, resize_size: int, *, seed: int, count: int = 2000) -> PixelStats:
    """Mean/std and RGB PCA from a seeded sample of training images (at the loader's size)."""
    from realsys_cli.data.pipeline import resize_square

    rng = np.random.default_rng(seed)
    n = min(count, len(source))
    indices = np.sort(rng.choice(len(source), size=n, replace=False))
    images = np.stack([resize_square(source[int(i)]["image"], resize_size) for i in indices])
    return PixelStats.from_images(images)
