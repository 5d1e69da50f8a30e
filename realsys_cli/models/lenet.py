"""A LeNet-style digit classifier (after LeCun et al., "Gradient-Based Learning Applied to
Document Recognition", Proc. IEEE 1998), in the modern form: ReLU, max-pooling, 'same' padding.

It is the `classifier_small` workload of the PyTorch reference (bench/peer_torch.py),
layer for layer, and the default model of `realsys train-classifier` on 28x28 digits; it is also
the MNIST target of the fooling-images experiments (Nguyen, Yosinski, Clune, CVPR 2015):

    conv1 32 5x5 pad 2 -> ReLU -> max-pool 2/2      (B, 14, 14, 32) at 28 px
    conv2 64 5x5 pad 2 -> ReLU -> max-pool 2/2      (B, 7, 7, 64)
    flatten (3136) -> fc1 256 -> ReLU -> fc2 num_classes

857,738 parameters at 28x28x1 and 10 classes. 1 or 3 input channels and 28-32 px both work (the
flatten size is (image_size // 4)^2 * 64).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from realsys_cli.models.layers import check_image_size, conv, conv_size, linear, max_pool


class LeNet(nnx.Module):
    """LeNet on NHWC images; logits (N, num_classes) float32.

    Args:
        num_classes: outputs of fc2.
        in_channels: 1 (grey digits) or 3.
        image_size: input side in pixels (28 for MNIST, 32 for CIFAR-sized inputs).
        init: "he" (default) or "paper" (AlexNet's N(0, 0.01^2), zero biases here).
        dtype: computation dtype; parameters stay float32.
        rngs: "params" stream for init.

    There is no dropout, so `train` does not change the output; it is accepted so that every
    classifier has the same call signature.
    """

    MIN_IMAGE_SIZE: ClassVar[int] = 4  # the smallest side whose last pool still gives 1x1

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        init: str = "he",
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ):
        check_image_size("lenet", image_size, self.MIN_IMAGE_SIZE)
        side = self.feature_map_size(image_size)
        layer = dict(init=init, dtype=dtype, rngs=rngs)
        self.num_classes = num_classes
        self.feature_dim = 256
        self.conv1 = conv(in_channels, 32, 5, padding=2, **layer)
        self.conv2 = conv(32, 64, 5, padding=2, **layer)
        self.fc1 = linear(side * side * 64, 256, **layer)
        self.fc2 = linear(256, num_classes, logits=True, **layer)

    @staticmethod
    def feature_map_size(image_size: int) -> int:
        """Side of the last feature map (before flatten): 7 at 28 px, 8 at 32 px."""
        return conv_size(conv_size(image_size, 2, 2), 2, 2)

    def features(self, x: jax.Array) -> jax.Array:
        """Penultimate-layer activations (N, 256) float32: ReLU(fc1)."""
        x = max_pool(jax.nn.relu(self.conv1(x)), 2, 2)  # (B, 14, 14, 32) at 28 px
        x = max_pool(jax.nn.relu(self.conv2(x)), 2, 2)  # (B, 7, 7, 64)
        x = x.reshape(x.shape[0], -1)  # (B, 3136), NHWC order (h, w, c)
        return jax.nn.relu(self.fc1(x)).astype(jnp.float32)  # (B, 256)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits (N, num_classes) float32 of normalised NHWC images."""
        return self.fc2(self.features(x)).astype(jnp.float32)
