"""The image classifiers (Flax NNX, NHWC), chosen by name.

    model = build_classifier("alexnet-small", num_classes=10, in_channels=3, image_size=64,
                             rngs=nnx.Rngs(params=0, dropout=1))
    logits = model(images, train=True)   # (N, 10) float32; images NHWC, already normalised
    embedding = model.features(images)   # (N, model.feature_dim) penultimate activations
    count_params(model)                  # the number of weights (of any model, or a state's)

Names: "alexnet" (the paper's network, 224/227 px), "alexnet-small" (32-64 px, the bench's
`classifier` workload) and "lenet" (28-32 px digits, the bench's `classifier_small`).

The other jobs' networks live beside them: dcgan.py (train-gan's G and D), convlstm.py
(predict-frames' ConvLSTM) and frame_discriminator.py (predict-frames --adversarial's D).
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
from flax import nnx

from realsys_cli.errors import ConfigError
from realsys_cli.models.alexnet import AlexNet, AlexNetSmall
from realsys_cli.models.lenet import LeNet

__all__ = ["CLASSIFIERS", "AlexNet", "AlexNetSmall", "LeNet", "build_classifier", "count_params",
           "min_image_size"]

CLASSIFIERS: dict[str, type[AlexNet | AlexNetSmall | LeNet]] = {
    "alexnet": AlexNet,
    "alexnet-small": AlexNetSmall,
    "lenet": LeNet,
}


def _lookup(name: str) -> type[AlexNet | AlexNetSmall | LeNet]:
    if name not in CLASSIFIERS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(CLASSIFIERS))}")
    return CLASSIFIERS[name]


def count_params(weights: Any) -> int:
    """The number of weights: the scalars in a pytree of arrays (a train state's "params", an
    nnx.State), or in an nnx.Module's nnx.Param variables. Reads shapes only, so it works on
    nnx.eval_shape / jax.eval_shape results; an empty tree (no discriminator) counts 0."""
    if isinstance(weights, nnx.Module):
        weights = nnx.state(weights, nnx.Param)
    return int(sum(x.size for x in jax.tree.leaves(weights)))


def min_image_size(name: str) -> int:
    """The smallest input side (pixels) model `name` accepts."""
    return _lookup(name).MIN_IMAGE_SIZE


def build_classifier(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    rngs: nnx.Rngs,
    **options: Any,
) -> nnx.Module:
    """Construct classifier `name`; `options` are its own keyword arguments (init, lrn, dropout,
    dtype: see each class). Raises ConfigError for an unknown name, an image too small for the
    model, or an option the model does not take."""
    cls = _lookup(name)
    fixed = {"num_classes", "in_channels", "image_size", "rngs"}
    accepted = set(inspect.signature(cls.__init__).parameters) - fixed - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"{name} does not take option(s) {', '.join(unknown)}; "
            f"its options are {', '.join(sorted(accepted))}"
        )
    return cls(
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        rngs=rngs,
        **options,
    )
