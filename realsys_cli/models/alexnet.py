"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) and a scaled-down variant for 32-64 px.

`AlexNet` follows the paper's section 3.5 with the single-tower sizes (the paper split each layer
over two GPUs; conv2, conv4 and conv5 only saw the channels of their own GPU, so its count is
about 60M, while one tower of the full sizes has 62,378,344 parameters at 1000 classes):

    conv1 96 11x11/4 -> ReLU -> LRN -> max-pool 3/2
    conv2 256 5x5 pad 2 -> ReLU -> LRN -> max-pool 3/2
    conv3 384 3x3 pad 1 -> ReLU; conv4 384 3x3 pad 1 -> ReLU; conv5 256 3x3 pad 1 -> ReLU
    -> max-pool 3/2 -> flatten (6x6x256 = 9216 at 224 or 227 px)
    fc6 4096 -> ReLU -> dropout 0.5; fc7 4096 -> ReLU -> dropout 0.5; fc8 num_classes (logits)

conv1 pads 2 like torchvision, so a 224 input gives 55x55 as the paper says (a 227 input gives
56x56); after pool1 both are 27x27 and the rest of the network is identical.

`AlexNetSmall` ("alexnet-small") is the same structure for 32-64 px images, identical to the
`classifier` workload of the PyTorch reference (bench/peer_torch.py) so that speeds
can be compared side by side: 7,706,442 parameters at 64 px and 10 classes.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from realsys_cli.models.layers import (
    check_image_size,
    conv,
    conv_size,
    linear,
    local_response_norm,
    max_pool,
)


class AlexNet(nnx.Module):
    """The paper's AlexNet on NHWC images; logits (N, num_classes) float32.

    Args:
        num_classes: outputs of fc8.
        in_channels: input channels (3 for RGB).
        image_size: input side in pixels (224 or 227 for the paper's 6x6x256 flatten; any side
            from MIN_IMAGE_SIZE up works, the flatten size is computed from it).
        init: "paper" (N(0, 0.01^2) weights; biases 1 in conv2, conv4, conv5, fc6, fc7, else 0)
            or "he" (He-normal weights, zero biases: use it at small sizes, where the paper's
            init is known to stall).
        lrn: local response normalisation after conv1 and conv2 (the paper's, on by default).
        dropout: dropout rate of fc6 and fc7's outputs.
        dtype: computation dtype (e.g. jnp.bfloat16); parameters stay float32.
        rngs: "params" stream for init and "dropout" stream (both fall back to "default").
    """

    MIN_IMAGE_SIZE: ClassVar[int] = 63  # the smallest side whose last pool still gives 1x1

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int = 227,
        init: str = "paper",
        lrn: bool = True,
        dropout: float = 0.5,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ):
        check_image_size("alexnet", image_size, self.MIN_IMAGE_SIZE)
        side = self.feature_map_size(image_size)
        layer = dict(init=init, dtype=dtype, rngs=rngs)
        self.lrn = lrn
        self.num_classes = num_classes
        self.feature_dim = 4096
        self.conv1 = conv(in_channels, 96, 11, stride=4, padding=2, **layer)
        self.conv2 = conv(96, 256, 5, padding=2, paper_bias=1.0, **layer)
        self.conv3 = conv(256, 384, 3, padding=1, **layer)
        self.conv4 = conv(384, 384, 3, padding=1, paper_bias=1.0, **layer)
        self.conv5 = conv(384, 256, 3, padding=1, paper_bias=1.0, **layer)
        self.fc6 = linear(side * side * 256, 4096, paper_bias=1.0, **layer)
        self.fc7 = linear(4096, 4096, paper_bias=1.0, **layer)
        self.fc8 = linear(4096, num_classes, logits=True, **layer)
        self.drop6 = nnx.Dropout(dropout, rngs=rngs)
        self.drop7 = nnx.Dropout(dropout, rngs=rngs)

    @staticmethod
    def feature_map_size(image_size: int) -> int:
        """Side of the last feature map (before flatten): 6 at 224 and at 227."""
        side = conv_size(image_size, 11, 4, 2)  # conv1: 55 at 224, 56 at 227
        for _ in range(3):  # pool1 27, pool2 13, pool3 6 (conv2..conv5 keep the size)
            side = conv_size(side, 3, 2)
        return side

    def _penultimate(self, x: jax.Array, train: bool) -> jax.Array:
        """fc7's activations (N, 4096), before its dropout."""
        x = jax.nn.relu(self.conv1(x))  # (B, 55, 55, 96) at 224
        if self.lrn:
            x = local_response_norm(x)
        x = max_pool(x, 3, 2)  # (B, 27, 27, 96)
        x = jax.nn.relu(self.conv2(x))  # (B, 27, 27, 256)
        if self.lrn:
            x = local_response_norm(x)
        x = max_pool(x, 3, 2)  # (B, 13, 13, 256)
        x = jax.nn.relu(self.conv3(x))  # (B, 13, 13, 384)
        x = jax.nn.relu(self.conv4(x))  # (B, 13, 13, 384)
        x = jax.nn.relu(self.conv5(x))  # (B, 13, 13, 256)
        x = max_pool(x, 3, 2)  # (B, 6, 6, 256)
        x = x.reshape(x.shape[0], -1)  # (B, 9216), NHWC order (h, w, c)
        x = self.drop6(jax.nn.relu(self.fc6(x)), deterministic=not train)  # (B, 4096)
        return jax.nn.relu(self.fc7(x))  # (B, 4096)

    def features(self, x: jax.Array) -> jax.Array:
        """Penultimate-layer activations (N, 4096) float32: ReLU(fc7), dropout off."""
        return self._penultimate(x, train=False).astype(jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits (N, num_classes) float32 of normalised NHWC images; train turns dropout on."""
        x = self.drop7(self._penultimate(x, train), deterministic=not train)
        return self.fc8(x).astype(jnp.float32)


class AlexNetSmall(nnx.Module):
    """AlexNet's structure scaled for 32-64 px inputs; the bench's `classifier` network.

        conv1 64 5x5/2 pad 2 -> ReLU [-> LRN] -> max-pool 2/2      (B, 16, 16, 64) at 64 px
        conv2 192 5x5 pad 2 -> ReLU [-> LRN] -> max-pool 2/2       (B, 8, 8, 192)
        conv3 384 3x3 pad 1 -> ReLU; conv4 256 3x3 pad 1 -> ReLU; conv5 256 3x3 pad 1 -> ReLU
        -> max-pool 2/2 -> flatten                                  (B, 4096) at 64 px
        dropout -> fc1 1024 -> ReLU -> dropout -> fc2 1024 -> ReLU -> fc3 num_classes

    Dropout sits on the inputs of fc1 and fc2 as in peer_torch.py and torchvision (the paper drops
    the outputs of fc6 and fc7 instead, see `AlexNet`). Pools are 2/2 rather than 3/2, again as the
    reference. LRN is off by default because the reference has none (the timings compare equal
    networks); `lrn=True` adds the paper's LRN after conv1 and conv2. He init by default.

    Args: as `AlexNet`, with init="he" and lrn=False by default (init="paper" puts its biases of 1
    in the paper's places: conv2, conv4, conv5, fc1, fc2). The flatten size is
    (ceil(image_size / 2) // 8)^2 * 256: 1024 at 32 px, 4096 at 64 px.
    """

    MIN_IMAGE_SIZE: ClassVar[int] = 15  # the smallest side whose last pool still gives 1x1

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 64,
        init: str = "he",
        lrn: bool = False,
        dropout: float = 0.5,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ):
        check_image_size("alexnet-small", image_size, self.MIN_IMAGE_SIZE)
        side = self.feature_map_size(image_size)
        layer = dict(init=init, dtype=dtype, rngs=rngs)
        self.lrn = lrn
        self.num_classes = num_classes
        self.feature_dim = 1024
        self.conv1 = conv(in_channels, 64, 5, stride=2, padding=2, **layer)
        self.conv2 = conv(64, 192, 5, padding=2, paper_bias=1.0, **layer)
        self.conv3 = conv(192, 384, 3, padding=1, **layer)
        self.conv4 = conv(384, 256, 3, padding=1, paper_bias=1.0, **layer)
        self.conv5 = conv(256, 256, 3, padding=1, paper_bias=1.0, **layer)
        self.fc1 = linear(side * side * 256, 1024, paper_bias=1.0, **layer)
        self.fc2 = linear(1024, 1024, paper_bias=1.0, **layer)
        self.fc3 = linear(1024, num_classes, logits=True, **layer)
        self.drop1 = nnx.Dropout(dropout, rngs=rngs)
        self.drop2 = nnx.Dropout(dropout, rngs=rngs)

    @staticmethod
    def feature_map_size(image_size: int) -> int:
        """Side of the last feature map (before flatten): 4 at 64 px, 2 at 32 px."""
        side = conv_size(image_size, 5, 2, 2)  # conv1: 32 at 64 px
        for _ in range(3):  # pool1 16, pool2 8, pool3 4 (conv2..conv5 keep the size)
            side = conv_size(side, 2, 2)
        return side

    def _penultimate(self, x: jax.Array, train: bool) -> jax.Array:
        """fc2's activations (N, 1024)."""
        x = jax.nn.relu(self.conv1(x))  # (B, 32, 32, 64) at 64 px
        if self.lrn:
            x = local_response_norm(x)
        x = max_pool(x, 2, 2)  # (B, 16, 16, 64)
        x = jax.nn.relu(self.conv2(x))  # (B, 16, 16, 192)
        if self.lrn:
            x = local_response_norm(x)
        x = max_pool(x, 2, 2)  # (B, 8, 8, 192)
        x = jax.nn.relu(self.conv3(x))  # (B, 8, 8, 384)
        x = jax.nn.relu(self.conv4(x))  # (B, 8, 8, 256)
        x = jax.nn.relu(self.conv5(x))  # (B, 8, 8, 256)
        x = max_pool(x, 2, 2)  # (B, 4, 4, 256)
        x = x.reshape(x.shape[0], -1)  # (B, 4096), NHWC order (h, w, c)
        x = jax.nn.relu(self.fc1(self.drop1(x, deterministic=not train)))  # (B, 1024)
        return jax.nn.relu(self.fc2(self.drop2(x, deterministic=not train)))  # (B, 1024)

    def features(self, x: jax.Array) -> jax.Array:
        """Penultimate-layer activations (N, 1024) float32: ReLU(fc2), dropout off."""
        return self._penultimate(x, train=False).astype(jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits (N, num_classes) float32 of normalised NHWC images; train turns dropout on."""
        return self.fc3(self._penultimate(x, train)).astype(jnp.float32)
