"""Spectral normalisation (Miyato, Kataoka, Koyama, Yoshida 2018, "Spectral Normalization for
Generative Adversarial Networks"; the authors' Chainer code: pfnet-research/sngan_projection,
source/links/sn_convolution_2d.py and source/functions/max_sv.py).

A layer's kernel W, read as the matrix (k*k*Cin, Cout) that multiplies each input patch, is
divided by an estimate of its largest singular value sigma(W), so that every layer of D, and so D
itself, changes its output at most as fast as its input (Lipschitz constant <= 1 per layer).

sigma(W) comes from power iteration, warm-started from the previous step's vector:

    u (Cout,)   a unit vector, the estimate of W's top right singular vector
    v  = normalise(W u)        (k*k*Cin,)
    u' = normalise(W^T v)      (Cout,)     the stored u after the iteration
    sigma = ||W u'||                       (= max over unit v of v^T W u')

One iteration per training step is enough because W moves little per step (the paper's
Algorithm 1). u is an `SpectralVector`, a non-Param nnx Variable: it gets no gradient, lands
in the net's non-Param state (the GAN's "d_rest") and so in every checkpoint. The vectors are
constants for autodiff (as in the paper), so d sigma / dW = v u'^T with v = normalise(W u').

sigma is a function of the stored u alone (the authors compute u'^T W v with v from the old u;
the two agree once u has converged), so every call between two iterations -- D on the real and
on the generated batch, G's step, an evaluation -- divides by the same number.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

_EPS = 1e-12  # the authors' l2-normalisation epsilon
_DIMS = ("NHWC", "HWIO", "NHWC")


class SpectralVector(nnx.Variable):
    """The power iteration's unit vector u (Cout,): state, not a trained parameter."""


def _normalise(x: jax.Array) -> jax.Array:
    return x / (jnp.linalg.norm(x) + _EPS)


def power_iteration(matrix: jax.Array, u: jax.Array) -> jax.Array:
    """One step of power iteration on `matrix` (m, n) from the unit vector u (n,) -> u' (n,).

    Both vectors are constants for autodiff: the iteration only follows W, it is not trained."""
    matrix, u = jax.lax.stop_gradient(matrix), jax.lax.stop_gradient(u)
    v = _normalise(matrix @ u)  # (m,)
    return _normalise(matrix.T @ v)  # (n,)


def top_singular_value(matrix: jax.Array, u: jax.Array) -> jax.Array:
    """sigma = ||W u|| for the unit vector u (n,), differentiable in `matrix` (m, n): the
    largest singular value when u is the top right singular vector, a lower bound otherwise."""
    return jnp.linalg.norm(matrix @ jax.lax.stop_gradient(u))


def kernel_matrix(kernel: jax.Array) -> jax.Array:
    """An HWIO kernel (k, k, Cin, Cout) as the matrix (k*k*Cin, Cout) applied to each patch."""
    return kernel.reshape(-1, kernel.shape[-1])


class SpectralNormConv(nnx.Module):
    """A 2-D convolution whose kernel is divided by its largest singular value (estimated).

    NHWC input, HWIO kernel (k, k, Cin, Cout), explicit padding ((p, p), (p, p)): the same
    convention as models/dcgan.py's convolutions. `kernel_init(key, shape)` draws the kernel
    (the DCGAN's N(0, 0.02) in the discriminator) and, normalised, the first u.

    `power_iteration=True` advances u by one iteration before normalising (call it once per
    training step); otherwise the stored u is used as it is (evaluation, and every other call
    of the step). `conv_general_dilated` computes the convolution: jax.lax's, or a drop-in
    with its signature (as nnx.Conv takes one).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 padding: int, *, kernel_init: Callable, use_bias: bool = False,
                 conv_general_dilated: Callable = jax.lax.conv_general_dilated,
                 rngs: nnx.Rngs) -> None:
        self.stride, self.padding = stride, padding
        self.conv_general_dilated = conv_general_dilated
        self.kernel = nnx.Param(kernel_init(rngs.params(),
                                            (kernel, kernel, in_channels, out_channels)))
        self.u = SpectralVector(_normalise(kernel_init(rngs.params(), (out_channels,))))
        self.bias = nnx.Param(jnp.zeros((out_channels,))) if use_bias else None

    def sigma(self) -> jax.Array:
        """The current estimate of the kernel's largest singular value, from the stored u."""
        return top_singular_value(kernel_matrix(self.kernel[...]), self.u[...])

    def normalised_kernel(self) -> jax.Array:
        """W / sigma(W), (k, k, Cin, Cout)."""
        return self.kernel[...] / self.sigma()

    def __call__(self, x: jax.Array, *, power_iteration: bool = False) -> jax.Array:
        """x (B, H, W, Cin) -> (B, H', W', Cout)."""
        if power_iteration:
            self.u[...] = power_iteration_of(self)
        pad = ((self.padding, self.padding), (self.padding, self.padding))
        y = self.conv_general_dilated(x, self.normalised_kernel(), (self.stride,) * 2, pad,
                                      dimension_numbers=_DIMS)
        return y if self.bias is None else y + self.bias[...]


def power_iteration_of(layer: SpectralNormConv) -> jax.Array:
    """The layer's next u (Cout,): one iteration on its kernel matrix from its stored u."""
    return power_iteration(kernel_matrix(layer.kernel[...]), layer.u[...])
