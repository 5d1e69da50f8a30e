"""Building blocks shared by the classifiers: pooling, local response normalisation, init schemes.

Everything works on NHWC arrays (batch, height, width, channels), the layout XLA prefers on CPU.

References: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012 (section 3.3: local response normalisation; 3.4: overlapping pooling;
5: initialisation). He et al., "Delving Deep into Rectifiers", ICCV 2015 (He-normal init).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from realsys_cli.errors import ConfigError

INITS = ("paper", "he")
"""Weight-init schemes every classifier accepts as `init=`.

"paper": weights N(0, 0.01^2), biases 0 or 1 per layer as in AlexNet section 5. It is known not
to converge (loss stuck at chance) at small input sizes.
"he": He-normal weights (truncated normal, variance 2 / fan_in, `jax.nn.initializers.he_normal`)
and zero biases: the one to use below ImageNet sizes.
"""


def conv_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution or pooling (floor rounding, as the paper and PyTorch); 0 if
    the window does not fit at all."""
    if size + 2 * padding < kernel:
        return 0
    return (size + 2 * padding - kernel) // stride + 1


def check_image_size(model: str, image_size: int, minimum: int) -> None:
    """Raise ConfigError when `image_size` leaves no pixel for the model's last pooling layer."""
    if image_size < minimum:
        raise ConfigError(
            f"{model} needs images of at least {minimum}x{minimum} pixels, got "
            f"{image_size}x{image_size}; use a larger image size or a smaller model"
        )


def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
    """Max-pool the H and W axes of NHWC `x`: VALID padding, floor output sizes.

    Same values as `jax.lax.reduce_window(x, -inf, max, (1, w, w, 1), (1, s, s, 1), "VALID")`
    (and `flax.linen.max_pool`), but written so that XLA:CPU gets a cheap gradient: the gradient
    of `reduce_window` lowers to index tensors and a scatter (about 55% of a LeNet train step).

    - window == stride (non-overlapping, 2/2): crop, reshape to (B, Ho, s, Wo, s, C), max.
    - otherwise (AlexNet's overlapping 3/2): separably, the max of `window` strided row slices,
      then of `window` strided column slices. One AlexNet train step at 224 px on a 2-core CPU
      took about 0.9x the time of the `reduce_window` version; the 9 slices of each 3x3 window
      in one chain of maxima took about 1.1x (XLA recomputes the chain in backward fusions).

    Where a window holds tied maxima the gradient is shared among them rather than all going to
    one of them; both are valid subgradients (ties are mostly ReLU zeros, whose gradient is 0).
    """
    b, h, w, c = x.shape
    out_h, out_w = conv_size(h, window, stride), conv_size(w, window, stride)
    if window == stride:
        x = x[:, : out_h * stride, : out_w * stride, :]
        return x.reshape(b, out_h, stride, out_w, stride, c).max(axis=(2, 4))
    rows = x[:, 0 : stride * (out_h - 1) + 1 : stride]  # (B, out_h, W, C)
    for i in range(1, window):
        rows = jnp.maximum(rows, x[:, i : i + stride * (out_h - 1) + 1 : stride])
    out = rows[:, :, 0 : stride * (out_w - 1) + 1 : stride]  # (B, out_h, out_w, C)
    for j in range(1, window):
        out = jnp.maximum(out, rows[:, :, j : j + stride * (out_w - 1) + 1 : stride])
    return out


def local_response_norm(
    x: jax.Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75
) -> jax.Array:
    """AlexNet's local response normalisation across the channels (last axis) of NHWC `x`.

    b[c] = a[c] / (k + alpha * sum_{c' = c - size//2}^{c + (size-1)//2} a[c']^2) ^ beta,
    the window clipped at the first and last channel (paper section 3.3, n = size; defaults are
    the paper's k=2, n=5, alpha=1e-4, beta=0.75).

    Convention: alpha multiplies the plain sum, as in the paper (and Caffe's "alpha / n" is not
    applied). PyTorch's `nn.LocalResponseNorm(size, alpha, beta, k)` divides alpha by `size`, so
    it matches this function with alpha_torch = alpha * size (1e-4 here = 5e-4 in PyTorch).

    Computed in float32 whatever the input dtype, returned in the input dtype.
    """
    x32 = x.astype(jnp.float32)
    # sum of squares over a centred window of channels; zero padding = the paper's clipping.
    # reduce_window(add) has a cheap gradient (a pad and another window sum); the same sum as 5
    # shifted slices made the LRN gradient ~4x slower on XLA:CPU.
    window_sum = jax.lax.reduce_window(
        jnp.square(x32),
        0.0,
        jax.lax.add,
        window_dimensions=(1,) * (x.ndim - 1) + (size,),
        window_strides=(1,) * x.ndim,
        padding=((0, 0),) * (x.ndim - 1) + ((size // 2, (size - 1) // 2),),
    )
    denominator = k + alpha * window_sum
    if beta == 0.75:  # the paper's: d^-3/4 = rsqrt(d) * sqrt(rsqrt(d)); pow took 1.7x as long
        inv_sqrt = jax.lax.rsqrt(denominator)
        scale = inv_sqrt * jnp.sqrt(inv_sqrt)
    else:
        scale = denominator**-beta
    return (x32 * scale).astype(x.dtype)


def _kernel_init(init: str) -> nnx.Initializer:
    if init == "paper":
        return nnx.initializers.normal(stddev=0.01)
    if init == "he":
        return nnx.initializers.he_normal()
    raise ConfigError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")


def _bias_init(init: str, paper_bias: float) -> nnx.Initializer:
    return nnx.initializers.constant(paper_bias if init == "paper" else 0.0)


def conv(
    in_channels: int,
    out_channels: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int = 0,
    init: str,
    paper_bias: float = 0.0,
    dtype: jnp.dtype | None,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A square `kernel` convolution with symmetric zero `padding` (PyTorch's `padding=`).

    Explicit padding rather than "SAME": for stride 2 on an even side, "SAME" pads (1, 2) while
    PyTorch pads (2, 2), which shifts every output pixel. `paper_bias` is the constant bias under
    init="paper" (the paper sets 1 in some layers); init="he" always starts biases at 0.
    """
    return nnx.Conv(
        in_channels,
        out_channels,
        (kernel, kernel),
        strides=stride,
        padding=((padding, padding), (padding, padding)),
        kernel_init=_kernel_init(init),
        bias_init=_bias_init(init, paper_bias),
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def linear(
    in_features: int,
    out_features: int,
    *,
    init: str,
    paper_bias: float = 0.0,
    logits: bool = False,
    dtype: jnp.dtype | None,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """A fully connected layer with the same init conventions as `conv`.

    `logits=True` marks the output layer: it always gets the paper's N(0, 0.01^2) weights, so
    the first logits are near zero and the first loss near ln(num_classes). With He init there
    too, alexnet-small started at loss ~5.5 on 10 classes and stalled at chance on shapes.
    """
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=_kernel_init("paper" if logits else init),
        bias_init=_bias_init(init, paper_bias),
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )
