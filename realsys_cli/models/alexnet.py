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

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The sizes of one AlexNet-shaped network: five convolutions, three max-pools (after
    conv1, conv2 and conv5), LRN after conv1 and conv2 when on, three linear layers."""

    convs: tuple[tuple[int, int, int, int, float], ...]  # (out, kernel, stride, pad, paper bias)
    pool: tuple[int, int]  # (window, stride) of every max-pool
    fc_names: tuple[str, str, str]  # the linear layers' attribute names
    drop_names: tuple[str, str]
    fc_width: int
    # The paper drops fc6's and fc7's outputs; torchvision and the PyTorch peer drop the inputs
    # of their first two linear layers.
    dropout_on_inputs: bool


class _AlexNetShaped(nnx.Module):
    """What AlexNet and AlexNetSmall share; each subclass gives its `_Layout` and defaults."""

    LAYOUT: ClassVar[_Layout]
    NAME: ClassVar[str]
    MIN_IMAGE_SIZE: ClassVar[int]

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, init: str,
                 lrn: bool, dropout: float, dtype: jnp.dtype | None, rngs: nnx.Rngs):
        check_image_size(self.NAME, image_size, self.MIN_IMAGE_SIZE)
        layout, side = self.LAYOUT, self.feature_map_size(image_size)
        layer = dict(init=init, dtype=dtype, rngs=rngs)
        self.lrn = lrn
        self.num_classes = num_classes
        self.feature_dim = layout.fc_width
        channels = in_channels
        for i, (out, kernel, stride, pad, bias) in enumerate(layout.convs, start=1):
            setattr(self, f"conv{i}", conv(channels, out, kernel, stride=stride, padding=pad,
                                           paper_bias=bias, **layer))
            channels = out
        widths = (side * side * channels, layout.fc_width, layout.fc_width)
        first, second, logits = layout.fc_names
        setattr(self, first, linear(widths[0], widths[1], paper_bias=1.0, **layer))
        setattr(self, second, linear(widths[1], widths[2], paper_bias=1.0, **layer))
        setattr(self, logits, linear(widths[2], num_classes, logits=True, **layer))
        for name in layout.drop_names:
            setattr(self, name, nnx.Dropout(dropout, rngs=rngs))

    @classmethod
    def feature_map_size(cls, image_size: int) -> int:
        """Side of the last feature map (before flatten); conv2..conv5 keep the size."""
        _, kernel, stride, pad, _ = cls.LAYOUT.convs[0]
        side = conv_size(image_size, kernel, stride, pad)
        for _ in range(3):
            side = conv_size(side, *cls.LAYOUT.pool)
        return side

    def _penultimate(self, x: jax.Array, train: bool) -> jax.Array:
        """The second linear layer's activations (N, fc_width), before any dropout after it.
        Shapes below: AlexNet at 224 px | AlexNetSmall at 64 px."""
        layout = self.LAYOUT
        for i in range(1, 6):
            x = jax.nn.relu(getattr(self, f"conv{i}")(x))
            if i <= 2 and self.lrn:
                x = local_response_norm(x)
            if i in (1, 2, 5):  # (B, 27|16, 27|16, 96|64), (B, 13|8, ., 256|192), (B, 6|4, ., 256)
                x = max_pool(x, *layout.pool)
        x = x.reshape(x.shape[0], -1)  # (B, 9216 | 4096), NHWC order (h, w, c)
        first, second, _ = (getattr(self, name) for name in layout.fc_names)
        drop_a, drop_b = (getattr(self, name) for name in layout.drop_names)
        if layout.dropout_on_inputs:
            x = jax.nn.relu(first(drop_a(x, deterministic=not train)))
            return jax.nn.relu(second(drop_b(x, deterministic=not train)))
        x = drop_a(jax.nn.relu(first(x)), deterministic=not train)
        return jax.nn.relu(second(x))

    def features(self, x: jax.Array) -> jax.Array:
        """Penultimate-layer activations (N, feature_dim) float32, dropout off."""
        return self._penultimate(x, train=False).astype(jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits (N, num_classes) float32 of normalised NHWC images; train turns dropout on."""
        x = self._penultimate(x, train)
        if not self.LAYOUT.dropout_on_inputs:
            x = getattr(self, self.LAYOUT.drop_names[1])(x, deterministic=not train)
        return getattr(self, self.LAYOUT.fc_names[2])(x).astype(jnp.float32)


class AlexNet(_AlexNetShaped):
    """The paper's AlexNet on NHWC images; logits (N, num_classes) float32.

        conv1 96 11x11/4 pad 2 -> (B, 55, 55, 96) at 224; conv2 256 5x5 pad 2 (bias 1);
        conv3 384 3x3; conv4 384 3x3 (bias 1); conv5 256 3x3 (bias 1); pools 3/2;
        fc6 4096 -> dropout; fc7 4096 -> dropout; fc8 num_classes

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

    NAME = "alexnet"
    MIN_IMAGE_SIZE = 63  # the smallest side whose last pool still gives 1x1
    LAYOUT = _Layout(
        convs=((96, 11, 4, 2, 0.0), (256, 5, 1, 2, 1.0), (384, 3, 1, 1, 0.0),
               (384, 3, 1, 1, 1.0), (256, 3, 1, 1, 1.0)),
        pool=(3, 2), fc_names=("fc6", "fc7", "fc8"), drop_names=("drop6", "drop7"),
        fc_width=4096, dropout_on_inputs=False,
    )

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, image_size: int = 227,
                 init: str = "paper", lrn: bool = True, dropout: float = 0.5,
                 dtype: jnp.dtype | None = None, rngs: nnx.Rngs):
        super().__init__(num_classes=num_classes, in_channels=in_channels,
                         image_size=image_size, init=init, lrn=lrn, dropout=dropout, dtype=dtype,
                         rngs=rngs)


class AlexNetSmall(_AlexNetShaped):
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

    NAME = "alexnet-small"
    MIN_IMAGE_SIZE = 15  # the smallest side whose last pool still gives 1x1
    LAYOUT = _Layout(
        convs=((64, 5, 2, 2, 0.0), (192, 5, 1, 2, 1.0), (384, 3, 1, 1, 0.0),
               (256, 3, 1, 1, 1.0), (256, 3, 1, 1, 1.0)),
        pool=(2, 2), fc_names=("fc1", "fc2", "fc3"), drop_names=("drop1", "drop2"),
        fc_width=1024, dropout_on_inputs=True,
    )

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 64,
                 init: str = "he", lrn: bool = False, dropout: float = 0.5,
                 dtype: jnp.dtype | None = None, rngs: nnx.Rngs):
        super().__init__(num_classes=num_classes, in_channels=in_channels,
                         image_size=image_size, init=init, lrn=lrn, dropout=dropout, dtype=dtype,
                         rngs=rngs)
