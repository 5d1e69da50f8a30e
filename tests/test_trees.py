"""The resume tests' helpers can fail: trees.py tells apart what a bare zip of leaves would not,
and interrupt.py fails when no Ctrl-C stopped the run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from interrupt import interrupt_at_step
from trees import assert_trees_close, assert_trees_equal


def _state(**changes):
    state = {"params": {"w": jnp.arange(3.0), "b": jnp.zeros(())},
             "opt": (jnp.ones(3), jnp.int32(2)), "step": jnp.int32(5),
             "key": jax.random.key(0)}
    return {**state, **changes}


def test_equal_trees_pass_keys_included():
    assert_trees_equal(_state(), _state())
    assert_trees_close(_state(), _state(params={"w": jnp.arange(3.0) + 1e-9, "b": jnp.zeros(())}),
                       rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("other", [
    _state(params={"w": jnp.arange(3.0)}),  # a lost subtree (zip would stop short and pass)
    _state(extra=jnp.zeros(())),  # one more entry
    _state(opt=[jnp.ones(3), jnp.int32(2)]),  # a list for a tuple: another structure
    _state(step=jnp.float32(5)),  # another dtype
    _state(params={"w": jnp.arange(3.0).reshape(1, 3), "b": jnp.zeros(())}),  # another shape
    _state(key=jax.random.key(1)),  # another PRNG key
    _state(params={"w": jnp.arange(3.0).at[2].add(1e-6), "b": jnp.zeros(())}),  # one value
])
def test_any_difference_fails(other):
    with pytest.raises(AssertionError):
        assert_trees_equal(_state(), other)


def test_close_still_wants_equal_integers_and_keys():
    with pytest.raises(AssertionError):
        assert_trees_close(_state(), _state(step=jnp.int32(6)), rtol=0.5, atol=1.0)
    with pytest.raises(AssertionError):
        assert_trees_close(_state(), _state(key=jax.random.key(1)), rtol=0.5, atol=1.0)


class _Steps:
    def make_train_step(self):
        return lambda state, batch: (state + 1, {})


def _loop(steps, n: int) -> int:
    """A stand-in for the training loop: SIGINT sets a flag, checked after each step."""
    import signal

    stop = {"flag": False}
    previous = signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    try:
        step, state = steps.make_train_step(), 0
        for _ in range(n):
            state, _ = step(state, None)
            if stop["flag"]:
                raise KeyboardInterrupt
        return state
    finally:
        signal.signal(signal.SIGINT, previous)


def test_interrupt_stops_after_step_n_and_restores_the_method():
    real = _Steps.make_train_step
    with interrupt_at_step(_Steps, 3) as counter:
        _loop(_Steps(), 10)
    assert counter["calls"] == 3
    assert _Steps.make_train_step is real
    assert _loop(_Steps(), 10) == 10  # afterwards: no more Ctrl-C


def test_interrupt_fails_when_the_run_is_not_stopped():
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        with interrupt_at_step(_Steps, 30):  # the run ends before step 30
            _loop(_Steps(), 10)

    assert _loop(_Steps(), 4) == 4


def test_interrupt_fails_when_the_run_stops_late():
    def late(steps, n):  # looks at the flag every other step only
        import signal

        stop = {"flag": False}
        previous = signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
        try:
            step, state = steps.make_train_step(), 0
            for i in range(n):
                state, _ = step(state, None)
                if i % 2 and stop["flag"]:
                    raise KeyboardInterrupt
        finally:
            signal.signal(signal.SIGINT, previous)

    with pytest.raises(AssertionError, match="4 steps ran, expected to stop after 3"):
        with interrupt_at_step(_Steps, 3):
            late(_Steps(), 10)
