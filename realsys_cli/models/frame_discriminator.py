"""The frame discriminator of `predict-frames --adversarial` (Mathieu, Couprie, LeCun 2015,
"Deep multi-scale video prediction beyond mean square error").

Mathieu et al.'s discriminator judges whether future frames are real given the observed ones.
Here one frame at a time, conditioned on the last observed frame (so a prediction that lost or
teleported a digit is as easy to tell as a blurred one): (B, H, W, 2) -> patch logits
(B, H/8, W/8) from three strided 4x4 convolutions with LeakyReLU 0.2 (DCGAN's rules: no pooling,
no fully connected layer; no BatchNorm, so real and fake batches are judged independently).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class FrameDiscriminator(nnx.Module):
    def __init__(self, *, channels: int = 1, width: int = 32, rngs: nnx.Rngs) -> None:
        def conv(i: int, o: int, k: int, s: int) -> nnx.Conv:
            return nnx.Conv(i, o, (k, k), strides=(s, s), padding="SAME", rngs=rngs)

        self.convs = nnx.List([conv(2 * channels, width, 4, 2), conv(width, 2 * width, 4, 2),
                               conv(2 * width, 4 * width, 4, 2)])
        self.out = conv(4 * width, 1, 3, 1)

    def __call__(self, condition: jax.Array, frame: jax.Array) -> jax.Array:
        """condition, frame (B, H, W, C) in [0, 1] -> logits (B, H/8, W/8), one per patch."""
        x = jnp.concatenate([condition, frame], axis=-1) * 2.0 - 1.0  # (B, H, W, 2C) in [-1, 1]
        for conv in self.convs:
            x = jax.nn.leaky_relu(conv(x), 0.2)
        return self.out(x)[..., 0]
