"""Whole-tree comparisons of train states (params, optimizer, BatchNorm statistics, step, key).

A resumed run is exact when its final state is the uninterrupted run's to the bit: the same tree
structure (keys, Variable types, optimizer tuples) and every leaf equal in shape, dtype and
value. Comparing `zip(leaves(a), leaves(b))` alone would pass when one tree lost a subtree (zip
stops at the shorter) or when leaves were reordered; these helpers check the structure first.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _host(x: Any) -> np.ndarray:
    """A leaf as numpy; a typed PRNG key as its raw bits (np.asarray refuses key arrays)."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def _pairs(a: Any, b: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    assert jax.tree.structure(a) == jax.tree.structure(b), (
        f"the trees differ in structure:\n{jax.tree.structure(a)}\n!=\n{jax.tree.structure(b)}")
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(a)]
    pairs = list(zip(paths, jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert pairs, "empty trees: nothing was compared"
    return [(path, _host(x), _host(y)) for path, x, y in pairs]


def assert_trees_equal(a: Any, b: Any) -> None:
    """Same structure, and every leaf bit-for-bit equal (shape and dtype included)."""
    for path, x, y in _pairs(a, b):
        np.testing.assert_array_equal(x, y, err_msg=path, strict=True)


def assert_trees_close(a: Any, b: Any, *, rtol: float, atol: float) -> None:
    """Same structure, same shapes and dtypes, every leaf equal within float tolerance (for
    results of different reduction orders, e.g. a step sharded over devices vs one device).
    Integer leaves (step counts, Adam's count, PRNG key bits) must still be equal."""
    for path, x, y in _pairs(a, b):
        assert (x.shape, x.dtype) == (y.shape, y.dtype), (path, x.shape, x.dtype, y.shape, y.dtype)
        if np.issubdtype(x.dtype, np.inexact):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=path)
        else:
            np.testing.assert_array_equal(x, y, err_msg=path)
