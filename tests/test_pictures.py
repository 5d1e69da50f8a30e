"""pictures.to_uint8: one float -> uint8 conversion for every range the jobs produce."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli.pictures import to_uint8


def test_unit_range_rounds_half_to_even_and_clips():
    x = np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 2.0], np.float32)
    out = to_uint8(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.tolist() == [0, 0, 0, 2, 128, 255, 255]


def test_tanh_range_inside_jit_stays_a_jax_array():
    out = jax.jit(lambda x: to_uint8(x, low=-1.0))(jnp.array([-1.0, -0.5, 0.0, 1.0, 3.0]))
    assert isinstance(out, jax.Array) and out.dtype == jnp.uint8
    assert out.tolist() == [0, 64, 128, 255, 255]  # 63.75 -> 64, 127.5 -> 128 (even)


def test_a_list_is_read_as_numpy():
    assert to_uint8([0.0, 1.0]).tolist() == [0, 255]
