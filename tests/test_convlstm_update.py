"""The ConvLSTM's pointwise update with its hand-written gradient (models.convlstm.lstm_update)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli.models.convlstm import lstm_update


def _by_autodiff(gates, c):
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def test_values_and_gradients_match_autodiff():
    rng = np.random.default_rng(0)
    gates = jnp.asarray(3 * rng.normal(size=(2, 3, 4, 4 * 5)), jnp.float32)  # (B, h, w, 4H)
    c = jnp.asarray(rng.normal(size=(2, 3, 4, 5)), jnp.float32)
    wh, wc = (jnp.asarray(rng.normal(size=c.shape), jnp.float32) for _ in range(2))

    def loss(fn):  # both outputs carry a gradient, c' nonlinearly
        def f(gates, c):
            h, c_new = fn(gates, c)
            return jnp.sum(h * wh) + jnp.sum(jnp.sin(c_new) * wc)
        return f

    for a, b in zip(lstm_update(gates, c), _by_autodiff(gates, c)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    ours = jax.grad(loss(lstm_update), argnums=(0, 1))(gates, c)
    ref = jax.grad(loss(_by_autodiff), argnums=(0, 1))(gates, c)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_hand_computed_cell():
    # gates i = f = o = 0 (sigmoid 1/2), g = atanh(0.5) (tanh 1/2), c = 1:
    # c' = 0.5 * 1 + 0.5 * 0.5 = 0.75, h = 0.5 * tanh(0.75)
    gates = jnp.array([[0.0, 0.0, 0.0, float(np.arctanh(0.5))]])
    h, c_new = lstm_update(gates, jnp.array([[1.0]]))
    assert float(c_new[0, 0]) == np.float32(0.75)
    np.testing.assert_allclose(float(h[0, 0]), 0.5 * np.tanh(0.75), rtol=1e-6)
