"""The hand-differentiated operations SimVP's layers run on (models/simvp.py), NHWC.

Each is the plain function (checked against jax.lax / nnx.GroupNorm, values and gradients, in
tests/test_simvp.py) written so that XLA:CPU runs it fast; the measurements behind each are in
its docstring and in docs/speed.md ("predict-frames' SimVP step"):

  pixel_shuffle    PyTorch's PixelShuffle in NHWC (the decoder's upsampling)
  depthwise_conv   a depthwise 'SAME' correlation as shifted multiply-adds, its weight gradient
                   through a 2-D FFT from 25 taps
  group_norm       GroupNorm with one-pass statistics and a one-pass gradient
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """PyTorch's PixelShuffle in NHWC: (B, h, w, C*r*r) -> (B, h*r, w*r, C), channel c*r*r+i*r+j
    going to pixel (r*y + i, r*x + j) of channel c, as torch orders it."""
    b, h, w, d = x.shape
    c = d // (r * r)
    x = x.reshape(b, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3)  # (B, h, i, w, j, C)
    return x.reshape(b, h * r, w * r, c)


def _taps(x: jax.Array, kh: int, kw: int, dilation: int) -> Iterator[jax.Array]:
    """The kh*kw views of x (B, H, W, C) shifted by (i, j) * dilation, row-major in (i, j),
    each (B, H, W, C), zero-padded as a 'SAME' convolution with an odd kernel pads."""
    ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    for i in range(kh):
        for j in range(kw):
            yield xp[:, i * dilation : i * dilation + h, j * dilation : j * dilation + w]


def _shifted_sum(x: jax.Array, w: jax.Array, dilation: int) -> jax.Array:
    """A depthwise 'SAME' correlation: the sum over taps of x shifted by the tap, times
    w[i, j]. x (B, H, W, C), w (kh, kw, C) with kh, kw odd -> (B, H, W, C)."""
    kh, kw = w.shape[:2]
    taps = zip(_taps(x, kh, kw, dilation), w.reshape(kh * kw, -1))
    return sum((view * weight for view, weight in taps), jnp.zeros_like(x))


def _reachable(k: int, size: int, dilation: int) -> slice:
    """The rows (or columns) of a k-tap kernel whose offset (i - k//2) * dilation lands inside
    a frame `size` pixels long for some output pixel: |offset| < size. The others only ever
    multiply 'SAME' padding, so dropping them changes neither the output nor any gradient but
    theirs, which is 0. gSTA's 7x7 dilated 3 on SimVP's 8x8 latent keeps its middle 5x5."""
    half = min(k // 2, (size - 1) // dilation)
    return slice(k // 2 - half, k // 2 + half + 1)


def depthwise_conv(x: jax.Array, w: jax.Array, dilation: int) -> jax.Array:
    """Depthwise 'SAME' convolution (cross-correlation, as every conv layer), x (B, H, W, C),
    w (k, k, C), k odd -> (B, H, W, C).

    Written as k*k shifted multiply-adds with a hand-written gradient: on XLA:CPU a
    `feature_group_count=C` convolution's gradient ran about 50x slower than this (a 3x3 on
    (16, 16, 16, 640): 0.24 s against 5 ms for the input's gradient, on 2 busy cores). Taps
    that fall wholly in the padding are left out (`_reachable`); the slice's own gradient puts
    their zeros back into d w."""
    rows, cols = (_reachable(w.shape[a], x.shape[1 + a], dilation) for a in (0, 1))
    return _depthwise(x, w[rows, cols], dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise(x: jax.Array, w: jax.Array, dilation: int) -> jax.Array:
    return _shifted_sum(x, w, dilation)


def _depthwise_fwd(x: jax.Array, w: jax.Array,
                   dilation: int) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _shifted_sum(x, w, dilation), (x, w)


def _depthwise_bwd(dilation: int, residuals: tuple[jax.Array, jax.Array],
                   g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = residuals  # (B, H, W, C), (kh, kw, C); g (B, H, W, C)
    kh, kw = w.shape[:2]
    # d x: the same correlation of the output's gradient, with the kernel flipped in space
    dx = _shifted_sum(g, w[::-1, ::-1], dilation)
    if kh * kw >= FFT_MIN_TAPS:
        return dx, _weight_grad_fft(x, g, kh, kw, dilation).reshape(w.shape)
    # d w[i, j]: the input shifted by that tap times the output's gradient, summed over B, H, W
    dw = jnp.stack([(view * g).sum(axis=(0, 1, 2)) for view in _taps(x, kh, kw, dilation)])
    return dx, dw.reshape(w.shape)


# From this many taps the weight gradient goes through the FFT: on XLA:CPU each tap's
# reduction (view * g).sum over B, H, W costs about as much as reading both tensors (2 MB each
# at (16, 16, 16, 128): 1.3 ms a tap), and the FFT reads them once. Measured on (16, 16, 16, 128),
# one jitted call each, 2 cores: 5x5 33 -> 10 ms, 7x7 dilated 3 64 -> 17 ms; a 3x3 on 512
# channels 51 -> 64 ms, so 3x3s stay direct.
FFT_MIN_TAPS = 25


def _weight_grad_fft(x: jax.Array, g: jax.Array, kh: int, kw: int, dilation: int) -> jax.Array:
    """d w of a depthwise 'SAME' correlation, (kh*kw, C): tap (i, j) of channel c is the
    correlation of the padded input with the output's gradient at offset (i, j) * dilation,
    summed over the batch, all offsets at once as a product of 2-D FFTs.

    x, g (B, H, W, C). An FFT size L >= H + pad leaves every offset free of wrap-around (the
    padding is zeros: the indices that wrap land in it), and L >= (k-1)*dilation + 1 holds
    every offset."""
    _, h, w, c = x.shape
    ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    size = (max(h + ph, span_h), max(w + pw, span_w))
    xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))[:, : size[0], : size[1]]
    fx = jnp.fft.rfft2(xp.transpose(3, 0, 1, 2), s=size)  # (C, B, L_h, L_w // 2 + 1)
    fg = jnp.fft.rfft2(g.transpose(3, 0, 1, 2), s=size)
    corr = jnp.fft.irfft2((fx * jnp.conj(fg)).sum(axis=1), s=size)  # (C, L_h, L_w)
    return corr[:, :span_h:dilation, :span_w:dilation].reshape(c, kh * kw).T


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def _per_channel(v: jax.Array, per: int) -> jax.Array:
    """(N, G) per group -> (N, 1, 1, G * per), each group's value on its channels."""
    return jnp.repeat(v, per, axis=1)[:, None, None, :]


def _group_stats(x: jax.Array, groups: int, eps: float) -> tuple[jax.Array, jax.Array]:
    """x (N, H, W, C) -> per-channel mean and rsqrt(var + eps) of its group, each (N, 1, 1, C),
    from per-channel sums over H, W (one pass over x; variance as E[x^2] - E[x]^2, as flax)."""
    n, h, w, c = x.shape
    per = c // groups
    s1 = x.reshape(n, h * w, c).sum(1)  # (N, C)
    s2 = jnp.square(x).reshape(n, h * w, c).sum(1)
    count = h * w * per
    mean = s1.reshape(n, groups, per).sum(-1) / count  # (N, G)
    var = jnp.maximum(s2.reshape(n, groups, per).sum(-1) / count - jnp.square(mean), 0.0)
    return _per_channel(mean, per), _per_channel(jax.lax.rsqrt(var + eps), per)


def _group_norm_fwd(x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int, eps: float):
    mean, rstd = _group_stats(x, groups, eps)
    return (x - mean) * rstd * scale + bias, (x, scale, mean, rstd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int,
               eps: float) -> jax.Array:
    """GroupNorm of x (N, H, W, C) with per-channel scale and bias (C,), as nnx.GroupNorm.

    Written out with a hand-made gradient: at (160, 64, 64, 8), SimVP's encoder and decoder at
    full size, nnx.GroupNorm's forward + backward took 120 ms on 2 cores; this one reads x
    once for its statistics and once to normalise, and its gradient is one pass of per-channel
    sums and one elementwise pass."""
    return _group_norm_fwd(x, scale, bias, groups, eps)[0]


def _group_norm_bwd(groups, eps, residuals, dy):
    x, scale, mean, rstd = residuals  # (N, H, W, C), (C,), (N, 1, 1, C) twice
    n, h, w, c = x.shape
    per = c // groups
    sum_dy = dy.reshape(n, h * w, c).sum(1)  # (N, C)
    sum_dy_x = (dy * x).reshape(n, h * w, c).sum(1)
    m, r = mean[:, 0, 0], rstd[:, 0, 0]  # (N, C)
    sum_dy_xhat = r * (sum_dy_x - m * sum_dy)  # per channel: sum over H, W of dy * x_hat
    d_scale, d_bias = sum_dy_xhat.sum(0), sum_dy.sum(0)
    # dx = rstd * (u - mean_group(u) - x_hat * mean_group(u * x_hat)), u = dy * scale
    count = h * w * per

    def group_mean(v: jax.Array) -> jax.Array:  # (N, C) -> per channel, its group's mean
        return _per_channel(v.reshape(n, groups, per).sum(-1) / count, per)

    a = group_mean(sum_dy * scale)
    b = group_mean(sum_dy_xhat * scale)
    dx = rstd * (dy * scale - a - (x - mean) * rstd * b)
    return dx, d_scale, d_bias


group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)
