"""DCGAN's generator and discriminator (Radford, Metz, Chintala, "Unsupervised Representation
Learning with Deep Convolutional Generative Adversarial Networks", ICLR 2016), Flax NNX, NHWC.

The paper's rules: no pooling (strided convolutions in D, transposed convolutions in G);
BatchNorm in both nets except the G output and the D input; no hidden fully connected layers;
ReLU in G with a Tanh output; LeakyReLU 0.2 in D; weights N(0, 0.02). Kernels are 4x4 with
stride 2 and padding 1 (as pytorch/examples dcgan and the bench's `dcgan` workload; the paper
used 5x5), which exactly doubles or halves a side. Sized from the data:

    64 px  z (B, nz) -> 4x4x8w -> 8x8x4w -> 16x16x2w -> 32x32xw -> 64x64xC   (w = width = 64)
    32 px  z (B, nz) -> 4x4x4w -> 8x8x2w -> 16x16xw -> 32x32xC
    28 px  z (B, nz) -> 7x7x2w -> 14x14xw -> 28x28xC

and D mirrors G down to the base side, then one base x base convolution gives one logit. At
64x64x3 with nz = 100 and w = 64 this is the bench's workload layer for layer (no biases):
G 3,576,704 and D 2,765,568 parameters (bench/peer_torch.py).

The transposed convolution has a custom gradient (see `conv_transpose`): the gradient XLA:CPU
derives for a transposed convolution ran its weight-gradient convolutions as naive loops
(12x slower than PyTorch, the project's shared bench notes); written through ordinary strided
convolutions it is as fast as the classifier's.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.errors import ConfigError

SUPPORTED_SIZES = (28, 32, 64)
KERNEL = 4  # 4x4 kernels, stride 2, padding 1: side x2 (G) or /2 (D)
_DIMS = ("NHWC", "HWIO", "NHWC")


def check_image_size(image_size: int) -> None:
    if image_size not in SUPPORTED_SIZES:
        raise ConfigError(
            f"DCGAN supports {', '.join(map(str, SUPPORTED_SIZES))} px images, got {image_size}; "
            "use --set image_size=64 (or 32, 28) to resize the dataset"
        )


def base_size(image_size: int) -> int:
    """The side where G starts and D ends: 7 at 28 px, 4 at 32 and 64 px."""
    check_image_size(image_size)
    return 7 if image_size == 28 else 4


def num_upsamplings(image_size: int) -> int:
    """Stride-2 layers between the base side and the image: 2 (28 px), 3 (32), 4 (64)."""
    return round(math.log2(image_size / base_size(image_size)))


# ------------------------------------------------------------------ the transposed convolution
def _conv(a: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """An ordinary strided convolution, (B, H', W', Co) -> (B, H, W, Ci); kernel (k, k, Co, Ci)."""
    pad = ((padding, padding), (padding, padding))
    return jax.lax.conv_general_dilated(a, kernel, (stride, stride), pad,
                                        dimension_numbers=_DIMS)


def _output_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side - 1) * stride - 2 * padding + kernel  # PyTorch's ConvTranspose2d rule


def _transpose_forward(x: jax.Array, kernel: jax.Array, stride: int,
                       padding: int) -> jax.Array:
    b, h, w, _ = x.shape
    k, _, c_out, _ = kernel.shape
    out = jax.ShapeDtypeStruct((b, _output_side(h, k, stride, padding),
                                _output_side(w, k, stride, padding), c_out), x.dtype)
    (y,) = jax.linear_transpose(lambda a: _conv(a, kernel, stride, padding), out)(x)
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """PyTorch's ConvTranspose2d(stride, padding) in NHWC: the adjoint of a strided convolution.

    x (B, H, W, Ci) -> (B, (H-1)s - 2p + k, (W-1)s - 2p + k, Co); `kernel` (k, k, Co, Ci) is the
    HWIO kernel of the strided convolution it is the adjoint of (PyTorch's weight (Ci, Co, k, k)
    permuted to (2, 3, 1, 0)). The same values as `jax.lax.conv_transpose(...,
    transpose_kernel=True)`; only the gradient is written by hand:

      dL/dx = conv(dL/dy, kernel, stride s, padding p)       an ordinary strided convolution
      dL/dW = the weight gradient of that same convolution, pulled back from x
    """
    return _transpose_forward(x, kernel, stride, padding)


def _conv_transpose_fwd(x, kernel, stride, padding):
    return _transpose_forward(x, kernel, stride, padding), (x, kernel)


def _conv_transpose_bwd(stride, padding, residuals, dy):
    x, kernel = residuals
    dx = _conv(dy, kernel, stride, padding)  # (B, H, W, Ci)
    _, pullback = jax.vjp(lambda k: _conv(dy, k, stride, padding), kernel)
    (dkernel,) = pullback(x)  # (k, k, Co, Ci)
    return dx, dkernel


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


# ----------------------------------------------------------------------------------- layers
def _host_normal(key: jax.Array, shape: tuple[int, ...], mean: float, stddev: float,
                 dtype=jnp.float32) -> jax.Array:
    """N(mean, stddev) drawn with numpy from a seed taken from `key` (same key, same values).

    An eager `jax.random.normal` compiles one XLA program per shape: seconds each on a busy
    2-core CPU, and a DCGAN has a dozen shapes. Under a trace (jit, eval_shape) the key has no
    value, and jax.random is used instead.
    """
    if isinstance(key, jax.core.Tracer):
        return mean + stddev * jax.random.normal(key, shape, dtype)
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    values = np.random.default_rng(seed).normal(mean, stddev, shape)
    return jnp.asarray(values, dtype)


def dcgan_init(stddev: float = 0.02) -> nnx.Initializer:
    """The paper's weight init, N(0, 0.02)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return _host_normal(key, shape, 0.0, stddev, dtype)

    return init


def _bn_scale_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """BatchNorm scales N(1, 0.02), biases 0 (pytorch/examples dcgan's weights_init)."""
    return _host_normal(key, shape, 1.0, 0.02, dtype)


def batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    # momentum 0.9 here is PyTorch's momentum 0.1 (running = 0.9 running + 0.1 batch).
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, scale_init=_bn_scale_init,
                         rngs=rngs)


class TransposedConv(nnx.Module):
    """A bias-free transposed convolution with the custom gradient above."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int = KERNEL,
                 stride: int = 2, padding: int = 1, rngs: nnx.Rngs) -> None:
        self.stride, self.padding = stride, padding
        self.kernel = nnx.Param(dcgan_init()(rngs.params(),
                                             (kernel, kernel, out_channels, in_channels)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return conv_transpose(x, self.kernel[...], self.stride, self.padding)


class Project(nnx.Module):
    """z (B, nz) -> (B, s, s, C): G's first layer, a transposed convolution of a 1x1 input with
    an s x s kernel (stride 1, no padding), i.e. one matrix product."""

    def __init__(self, latent_dim: int, side: int, channels: int, *, rngs: nnx.Rngs) -> None:
        self.kernel = nnx.Param(dcgan_init()(rngs.params(), (latent_dim, side, side, channels)))

    def __call__(self, z: jax.Array) -> jax.Array:
        return jnp.einsum("bz,zhwc->bhwc", z, self.kernel[...])


def _conv_layer(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int,
                rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(in_channels, out_channels, (kernel, kernel), strides=stride,
                    padding=((padding, padding), (padding, padding)), use_bias=False,
                    kernel_init=dcgan_init(), rngs=rngs)


# ----------------------------------------------------------------------------------- networks
class Generator(nnx.Module):
    """z (B, latent_dim) -> images (B, S, S, C) in [-1, 1].

    `train=True` normalises with the batch's statistics (and updates the running averages);
    `train=False` uses the running averages, so a sample does not depend on its batch.
    """

    def __init__(self, *, latent_dim: int = 100, image_size: int = 64, channels: int = 3,
                 width: int = 64, rngs: nnx.Rngs) -> None:
        n, side = num_upsamplings(image_size), base_size(image_size)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # 64 px: 512, 256, 128, 64
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.project = Project(latent_dim, side, widths[0], rngs=rngs)
        self.norms = nnx.List([batch_norm(c, rngs) for c in widths])
        self.ups = nnx.List([TransposedConv(a, b, rngs=rngs)
                             for a, b in zip(widths[:-1], widths[1:])])
        self.out = TransposedConv(widths[-1], channels, rngs=rngs)

    def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.project(z)  # (B, 4, 4, 8w) at 64 px
        x = jax.nn.relu(self.norms[0](x, use_running_average=not train))
        for up, norm in zip(self.ups, self.norms[1:]):
            x = jax.nn.relu(norm(up(x), use_running_average=not train))  # side x2, channels /2
        return jnp.tanh(self.out(x))  # (B, S, S, C), no BatchNorm at the output


class Discriminator(nnx.Module):
    """Images (B, S, S, C) in [-1, 1] -> logits (B,) float32 (real > 0)."""

    def __init__(self, *, image_size: int = 64, channels: int = 3, width: int = 64,
                 rngs: nnx.Rngs) -> None:
        n, side = num_upsamplings(image_size), base_size(image_size)
        widths = [width * 2**i for i in range(n)]  # 64 px: 64, 128, 256, 512
        self.image_size, self.channels = image_size, channels
        self.first = _conv_layer(channels, widths[0], KERNEL, 2, 1, rngs)  # no BN at the input
        self.downs = nnx.List([_conv_layer(a, b, KERNEL, 2, 1, rngs)
                               for a, b in zip(widths[:-1], widths[1:])])
        self.norms = nnx.List([batch_norm(c, rngs) for c in widths[1:]])
        self.out = _conv_layer(widths[-1], 1, side, 1, 0, rngs)  # base x base -> 1x1

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = jax.nn.leaky_relu(self.first(x), 0.2)  # (B, S/2, S/2, w)
        for down, norm in zip(self.downs, self.norms):
            x = jax.nn.leaky_relu(norm(down(x), use_running_average=not train), 0.2)
        return self.out(x).reshape(x.shape[0]).astype(jnp.float32)  # (B,)
