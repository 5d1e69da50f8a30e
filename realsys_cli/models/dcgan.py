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

Both kinds of stride-2 layer are computed in forms XLA:CPU runs fast, with the same parameters
and the same values (tests/test_gan_models.py checks values and gradients against `jax.lax`):

  * the transposed convolution has a custom gradient (see `conv_transpose`): the gradient XLA:CPU
    derives for it ran its weight-gradient convolutions as naive loops (12x slower than PyTorch,
    the project's shared bench notes); written through ordinary strided convolutions it is as
    fast as the classifier's;
  * a 4x4 / stride 2 / padding 1 transposed convolution (in G's forward pass, and in the
    gradient of D's strided convolutions with respect to their input) is computed as one 2x2
    stride-1 convolution with 4 x C_out outputs over the input padded by one pixel, whose four
    groups of channels are the four output phases (sub-pixel form; each phase reads 2x2 taps of
    the 4x4 kernel), interleaved by a reshape. XLA's own form, a convolution over the input
    dilated with zeros, was 2.4x slower at 16 -> 32 px and 128 -> 64 channels (batch 64).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.errors import ConfigError
from realsys_cli.models.spectral_norm import SpectralNormConv

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


# Which taps of a 4x4 kernel output phase a (0: even rows, 1: odd rows) reads, for the 2x2
# window over the input padded by one pixel: even row 2m reads input rows m-1, m through kernel
# rows 3, 1; odd row 2m+1 reads rows m, m+1 through kernel rows 2, 0 (y[2i - 1 + k] += x[i] w[k]).
_PHASE_TAPS = ((3, 1), (2, 0))
_FUSED_PHASES_FROM = 16  # input side from which the four phases are one convolution


def _phase_kernels(kernel: jax.Array) -> list[jax.Array]:
    """The 4x4 kernel (4, 4, Co, Ci) as the 2x2 HWIO kernels (2, 2, Ci, Co) of output phases
    (0, 0), (0, 1), (1, 0), (1, 1)."""
    phases = []
    for a in range(2):
        rows = kernel[jnp.array(_PHASE_TAPS[a])]  # (2, 4, Co, Ci)
        for c in range(2):
            phases.append(rows[:, jnp.array(_PHASE_TAPS[c])].transpose(0, 1, 3, 2))
    return phases


def _subpixel_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """conv_transpose(x, kernel, 2, 1) for a 4x4 kernel, as stride-1 convolutions.

    x (B, H, W, Ci), kernel (4, 4, Co, Ci) -> (B, 2H, 2W, Co). Output pixel (2m + a, 2n + b) is
    phase (a, b)'s 2x2 convolution at window (m + a, n + b) of the input padded by one pixel,
    (B, H+2, W+2, Ci). From 16 px up the four phases are one convolution with 4 Co outputs over
    every (H+1) x (W+1) window (one large convolution is faster; 6% more work at 16 px); below,
    where that would be 56% more work at 4 px, four convolutions over exactly the windows each
    phase needs (each about 1.5x faster at 4 and 8 px, batch 64, 2 cores).
    """
    b, h, w, _ = x.shape
    c_out = kernel.shape[2]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = _phase_kernels(kernel)

    def conv(inputs: jax.Array, k: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(inputs, k, (1, 1), "VALID", dimension_numbers=_DIMS)

    if min(h, w) >= _FUSED_PHASES_FROM:
        z = conv(padded, jnp.concatenate(phases, axis=-1))  # (B, H+1, W+1, 4 Co)
        z = z.reshape(b, h + 1, w + 1, 2, 2, c_out)  # phase (a, c) at [..., a, c, :]
        out = [[z[:, a : a + h, c : c + w, a, c] for c in range(2)] for a in range(2)]
    else:
        out = [[conv(padded[:, a : a + h + 1, c : c + w + 1], phases[2 * a + c])
                for c in range(2)] for a in range(2)]  # each (B, H, W, Co)
    rows = [jnp.stack(pair, axis=3) for pair in out]  # each (B, H, W, 2, Co)
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c_out)  # (B, H, 2, W, 2, Co)


def _is_subpixel(kernel: jax.Array, stride: int, padding: int) -> bool:
    return kernel.shape[:2] == (4, 4) and stride == 2 and padding == 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """PyTorch's ConvTranspose2d(stride, padding) in NHWC: the adjoint of a strided convolution.

    x (B, H, W, Ci) -> (B, (H-1)s - 2p + k, (W-1)s - 2p + k, Co); `kernel` (k, k, Co, Ci) is the
    HWIO kernel of the strided convolution it is the adjoint of (PyTorch's weight (Ci, Co, k, k)
    permuted to (2, 3, 1, 0)). The same values as `jax.lax.conv_transpose(...,
    transpose_kernel=True)`; only the gradient is written by hand:

      dL/dx = conv(dL/dy, kernel, stride s, padding p)       an ordinary strided convolution
      dL/dW = the weight gradient of that same convolution, pulled back from x

    The 4x4 / stride 2 / padding 1 case (every stride-2 layer here) runs in sub-pixel form.
    """
    return _transpose_forward_fast(x, kernel, stride, padding)


def _conv_transpose_fwd(x, kernel, stride, padding):
    return _transpose_forward_fast(x, kernel, stride, padding), (x, kernel)


def _transpose_forward_fast(x: jax.Array, kernel: jax.Array, stride: int,
                            padding: int) -> jax.Array:
    if _is_subpixel(kernel, stride, padding):
        return _subpixel_transpose(x, kernel)
    return _transpose_forward(x, kernel, stride, padding)


def _conv_transpose_bwd(stride, padding, residuals, dy):
    x, kernel = residuals
    dx = _conv(dy, kernel, stride, padding)  # (B, H, W, Ci)
    _, pullback = jax.vjp(lambda k: _conv(dy, k, stride, padding), kernel)
    (dkernel,) = pullback(x)  # (k, k, Co, Ci)
    return dx, dkernel


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


@jax.custom_vjp
def strided_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """D's 4x4 / stride 2 / padding 1 convolution, x (B, 2H, 2W, Ci) -> (B, H, W, Co) with the
    HWIO kernel (4, 4, Ci, Co): `jax.lax`'s values and gradients, with the input gradient (a
    transposed convolution of dL/dy) in the sub-pixel form."""
    return _conv(x, kernel, 2, 1)


def _strided_conv_fwd(x, kernel):
    return _conv(x, kernel, 2, 1), (x, kernel)


def _strided_conv_bwd(residuals, dy):
    x, kernel = residuals
    dx = _subpixel_transpose(dy, kernel)  # (B, 2H, 2W, Ci)
    _, pullback = jax.vjp(lambda k: _conv(x, k, 2, 1), kernel)
    (dkernel,) = pullback(dy)
    return dx, dkernel


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def space_to_depth_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same 4x4 / stride 2 / padding 1 convolution as a 2x2 stride-1 one over 2x2 blocks.

    x (B, 2H, 2W, Ci) padded by one pixel is regrouped into (B, H+1, W+1, 4 Ci) blocks and the
    kernel (4, 4, Ci, Co) into (2, 2, 4 Ci, Co): tap (2t + p, 2u + q) of the 4x4 window is
    position (p, q) of block (t, u). For D's first layer (Ci = 3 colours) a convolution over 12
    channels is about twice as fast on XLA:CPU as one over 3 with stride 2; its gradient is
    JAX's own (stride-1 convolutions).
    """
    b, h2, w2, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = h2 // 2 + 1, w2 // 2 + 1
    blocks = padded.reshape(b, h, 2, w, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, 4 * c)
    k = kernel.reshape(2, 2, 2, 2, c, -1).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * c, -1)
    return jax.lax.conv_general_dilated(blocks, k, (1, 1), "VALID", dimension_numbers=_DIMS)


_FEW_CHANNELS = 16  # below this many input channels, D's stride-2 layer is space_to_depth_conv


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding, *,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, **kwargs) -> jax.Array:
    """`jax.lax.conv_general_dilated` for `nnx.Conv(conv_general_dilated=...)`: the NHWC 4x4 /
    stride 2 / padding 1 case goes to `space_to_depth_conv` (few input channels, even sides) or
    `strided_conv`, everything else to jax.lax."""
    nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DIMS)
    plain = all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    if (plain and feature_group_count == 1 and rhs.shape[:2] == (4, 4)
            and tuple(window_strides) == (2, 2)
            and tuple(map(tuple, padding)) == ((1, 1), (1, 1))
            and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc
            and kwargs.get("precision") is None and kwargs.get("out_sharding") is None
            and kwargs.get("preferred_element_type") is None):
        if rhs.shape[2] < _FEW_CHANNELS and lhs.shape[1] % 2 == 0 and lhs.shape[2] % 2 == 0:
            return space_to_depth_conv(lhs, rhs)
        return strided_conv(lhs, rhs)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, **kwargs)


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
                    kernel_init=dcgan_init(), conv_general_dilated=conv_general_dilated,
                    rngs=rngs)


# ----------------------------------------------------------------------------------- networks
class Generator(nnx.Module):
    """z (B, latent_dim + num_classes) -> images (B, S, S, C) in [-1, 1].

    z is the noise, followed, for a class-conditional G (num_classes = K > 0), by the class as
    a one-hot vector of K numbers: the label concatenated to the noise (Mirza & Osindero 2014,
    conditional GANs), so every caller that draws z (gan/steps.py's sample_z) draws the class
    with it. `train=True` normalises with the batch's statistics (and updates the running
    averages); `train=False` uses the running averages, so a sample does not depend on its batch.
    """

    def __init__(self, *, latent_dim: int = 100, image_size: int = 64, channels: int = 3,
                 width: int = 64, num_classes: int = 0, rngs: nnx.Rngs) -> None:
        n, side = num_upsamplings(image_size), base_size(image_size)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # 64 px: 512, 256, 128, 64
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.num_classes = num_classes
        self.project = Project(latent_dim + num_classes, side, widths[0], rngs=rngs)
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
    """Images (B, S, S, C) in [-1, 1] -> logits (B,) float32 (real > 0).

    Off by default (the paper's D), three options of `realsys train-gan`:
      num_classes=K       a class-conditional D by projection (see `class_terms`): called with
                          labels (B,) int32 it scores "a real image of class y" (without
                          num_classes, labels are ignored);
      spectral_norm=True  every convolution's kernel is divided by its largest singular value,
                          estimated by power iteration (SNGAN, Miyato et al. 2018; see
                          models/spectral_norm.py); its vectors u are non-Param state.
      norm="none"         no BatchNorm (SNGAN's D has none); each convolution gets a bias
                          instead, since a BatchNorm's shift was its layer's only one.
    `power_iteration=True` advances every spectral norm's u by one iteration (the GAN's train
    step asks for it once per step); otherwise the stored u are used as they are.
    """

    def __init__(self, *, image_size: int = 64, channels: int = 3, width: int = 64,
                 spectral_norm: bool = False, norm: str = "batch", num_classes: int = 0,
                 rngs: nnx.Rngs) -> None:
        if norm not in ("batch", "none"):
            raise ConfigError(f"the discriminator's norm must be batch or none, got {norm!r}")
        n, side = num_upsamplings(image_size), base_size(image_size)
        widths = [width * 2**i for i in range(n)]  # 64 px: 64, 128, 256, 512
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes
        conv = functools.partial(self._conv, spectral=spectral_norm, bias=norm == "none",
                                 rngs=rngs)
        self.first = conv(channels, widths[0], KERNEL, 2, 1)  # no BN at the input
        self.downs = nnx.List([conv(a, b, KERNEL, 2, 1) for a, b in zip(widths[:-1], widths[1:])])
        self.norms = nnx.List([batch_norm(c, rngs) for c in widths[1:]] if norm == "batch" else [])
        self.out = conv(widths[-1], 1, side, 1, 0)  # base x base -> 1x1
        if num_classes:  # the projection: one (base, base, C) map per class
            self.embed = nnx.Param(dcgan_init()(rngs.params(),
                                                (num_classes, side, side, widths[-1])))

    @staticmethod
    def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, *,
              spectral: bool, bias: bool, rngs: nnx.Rngs) -> nnx.Module:
        if spectral:
            return SpectralNormConv(in_channels, out_channels, kernel, stride, padding,
                                    kernel_init=dcgan_init(), use_bias=bias,
                                    conv_general_dilated=conv_general_dilated, rngs=rngs)
        if not bias:
            return _conv_layer(in_channels, out_channels, kernel, stride, padding, rngs)
        return nnx.Conv(in_channels, out_channels, (kernel, kernel), strides=stride,
                        padding=((padding, padding), (padding, padding)), use_bias=True,
                        kernel_init=dcgan_init(), conv_general_dilated=conv_general_dilated,
                        rngs=rngs)

    @staticmethod
    def _apply(layer: nnx.Module, x: jax.Array, power_iteration: bool) -> jax.Array:
        if isinstance(layer, SpectralNormConv):
            return layer(x, power_iteration=power_iteration)
        return layer(x)

    def __call__(self, x: jax.Array, labels: jax.Array | None = None, *, train: bool = False,
                 power_iteration: bool = False) -> jax.Array:
        x = jax.nn.leaky_relu(self._apply(self.first, x, power_iteration), 0.2)  # (B, S/2, S/2, w)
        for i, down in enumerate(self.downs):  # side /2, channels x2
            x = self._apply(down, x, power_iteration)
            if len(self.norms):
                x = self.norms[i](x, use_running_average=not train)
            x = jax.nn.leaky_relu(x, 0.2)
        # x: (B, base, base, C) features; the logit is linear in them
        logits = self._apply(self.out, x, power_iteration).reshape(x.shape[0])
        if self.num_classes:
            logits = logits + self.class_terms(x, labels)
        return logits.astype(jnp.float32)

    def class_terms(self, features: jax.Array, labels: jax.Array | None) -> jax.Array:
        """The projection discriminator's term (Miyato & Koyama 2018, cGANs with Projection
        Discriminator): <embed[y], features> for features (B, base, base, C) and labels (B,),
        (B,); D's logit for (x, y) is then its unconditional logit plus how well x's features
        match class y. `labels=None` takes, per image, the class whose term is largest: D's
        realness of x as whichever class it looks most like (fool-screen's question)."""
        embed = self.embed[...]  # (K, base, base, C)
        if labels is not None:
            return jnp.sum(features * embed[labels], axis=(1, 2, 3))
        return jnp.max(jnp.einsum("bhwc,khwc->bk", features, embed), axis=1)
