"""The shared training core, through the classifier: steps, sharding, resume, divergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from interrupt import interrupt_at_step
from trees import assert_trees_close, assert_trees_equal

from realsys_cli.classifier.augment import PixelStats
from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.classifier.setup import DataFacts, make_model, make_steps
from realsys_cli.classifier.steps import ClassifierSteps, init_state
from realsys_cli.classifier.train import train_and_evaluate
from realsys_cli.errors import CheckpointError, TrainingDivergedError
from realsys_cli.training import distributed, optim

TINY = "digits/train=256,test=64"


def _setup(batch: int = 8, **overrides):
    # No label smoothing: the loss of memorised labels then falls towards 0.
    cfg = ClassifierConfig(learning_rate=0.01, warmup_steps=0, label_smoothing=0.0, **overrides)
    facts = DataFacts(tuple("0123456789"), 1, 28, 28)
    model = make_model(cfg, facts)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 28, 28, 1), dtype=np.uint8)
    stats = PixelStats.from_images(images)
    steps = make_steps(cfg, facts, model, stats, total_steps=100)
    state = init_state(model, steps.tx, cfg.seed)
    batch_ = {"image": images, "label": np.arange(batch, dtype=np.int32) % 10}
    return steps, state, batch_


def test_loss_falls_on_a_fixed_batch_and_stays_finite():
    steps, state, batch = _setup()
    step = steps.make_train_step()
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0]
    assert int(state["step"]) == 30


def test_step_sharded_over_4_devices_equals_one_device():
    assert jax.device_count() == 4
    steps, state, batch = _setup(batch=8)
    one = steps.make_train_step()(jax.device_put(state, jax.devices()[0]), batch)[0]

    steps, state, batch = _setup(batch=8)
    mesh = distributed.data_mesh()
    sharded_batch = distributed.shard_batch(batch, mesh)
    assert len(sharded_batch["image"].sharding.device_set) == 4
    four = steps.make_train_step()(distributed.replicate(state, mesh), sharded_batch)[0]
    # The whole state: params, optimizer moments, the step and the key (LeNet has no BatchNorm).
    assert_trees_close(one, four, rtol=2e-5, atol=2e-6)


def test_plateau_divides_by_ten_after_patience_at_most_three_times():
    plateau = optim.Plateau(patience=2, max_reductions=3)
    cuts = [plateau.update(v) for v in [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]]
    assert cuts == [False, False, False, True, False, True, False, True, False, False]
    assert plateau.factor == pytest.approx(1e-3)


def test_lr_factor_scales_the_update():
    spec = optim.OptimizerSpec(name="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.0)
    tx = optim.build_optimizer(spec)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.ones(3)}
    state = tx.init(params)
    full, _ = tx.update(grads, state, params)
    tenth, _ = tx.update(grads, optim.set_lr_factor(state, 0.1), params)
    np.testing.assert_allclose(np.asarray(full["w"]), -0.1)
    np.testing.assert_allclose(np.asarray(tenth["w"]), -0.01)


def _cfg(**overrides) -> ClassifierConfig:
    base = dict(dataset=TINY, batch_size=32, num_epochs=2, log_every_steps=2, warmup_steps=2)
    return ClassifierConfig(**{**base, **overrides})


def _final_state(workdir) -> dict:
    """The latest checkpoint's whole state (params, BatchNorm/dropout state, optimizer with its
    plateau factor, step, key), loaded as `evaluate` does."""
    from realsys_cli.classifier.evaluate import load_trained

    return load_trained(workdir, best=False).state


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    cfg = _cfg()
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    assert straight["steps"] == 16

    with interrupt_at_step(ClassifierSteps, 5):  # Ctrl-C arrives while step 5 runs
        train_and_evaluate(cfg, tmp_path / "resumed")
    resumed = train_and_evaluate(cfg, tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 5
    assert resumed["steps"] == 16
    assert_trees_equal(_final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed"))
    assert resumed["eval_accuracy"] == straight["eval_accuracy"]


@pytest.mark.slow
def test_plateau_schedule_resumes_exactly_after_a_cut(tmp_path):
    """schedule=plateau, patience 1: a learning rate too small to change any prediction keeps
    the validation accuracy flat, so the rate is divided by 10 at the end of epochs 2 and 3.
    Ctrl-C in epoch 3 (step 19, after the first cut): the resumed run must carry both the
    factor in the optimizer state and the plateau's memory (best accuracy, epochs without
    progress) to cut again at the end of epoch 3; a run that forgot the latter would take
    epoch 3's accuracy as a new best and stop at x0.1."""
    from realsys_cli.training.checkpoint import Checkpointer

    cfg = _cfg(num_epochs=3, schedule="plateau", plateau_patience_epochs=1, learning_rate=1e-6,
               warmup_steps=0)
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    with interrupt_at_step(ClassifierSteps, 19):
        train_and_evaluate(cfg, tmp_path / "resumed")
    interrupted = Checkpointer(tmp_path / "resumed").read_meta()
    assert interrupted["step"] == 19
    assert interrupted["plateau"]["factor"] == pytest.approx(0.1)  # cut once, at step 16
    assert interrupted["plateau"]["reductions"] == 1
    resumed = train_and_evaluate(cfg, tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 19 and resumed["steps"] == straight["steps"] == 24

    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    assert_trees_equal(a, b)
    assert float(optim.lr_factor(a["opt"])) == pytest.approx(0.01)  # two cuts: 1 -> 0.1 -> 0.01
    metas = [Checkpointer(tmp_path / w).read_meta() for w in ("straight", "resumed")]
    assert metas[0]["plateau"] == metas[1]["plateau"]
    assert metas[1]["plateau"]["reductions"] == 2
    assert resumed["eval_accuracy"] == straight["eval_accuracy"]
    # The logged rate shows both cuts at the same steps in both runs (constant schedule x factor).
    from realsys_cli.training.metrics import MetricsLog

    def rates(workdir) -> dict[int, float]:
        return {r["step"]: r["lr"] for r in MetricsLog(workdir).read() if "lr" in r}

    straight_lr, resumed_lr = rates(tmp_path / "straight"), rates(tmp_path / "resumed")
    assert set(resumed_lr) == set(straight_lr) | {19}  # 19: flushed at Ctrl-C
    assert {k: resumed_lr[k] for k in straight_lr} == pytest.approx(straight_lr)
    assert [straight_lr[k] for k in (16, 18, 24)] == pytest.approx([1e-6, 1e-7, 1e-7])


def test_resume_with_another_model_is_refused(tmp_path):
    train_and_evaluate(_cfg(num_epochs=1), tmp_path / "w")
    with pytest.raises(CheckpointError, match="another config.*model"):
        train_and_evaluate(_cfg(num_epochs=1, model="alexnet-small"), tmp_path / "w")


def test_nan_loss_stops_with_a_clear_error_and_keeps_good_checkpoint(tmp_path):
    workdir = tmp_path / "w"
    train_and_evaluate(_cfg(num_epochs=1), workdir)  # a good checkpoint at step 8
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf).*step 8"):
        train_and_evaluate(_cfg(num_epochs=3, learning_rate=1e12), workdir)
    from realsys_cli.training.checkpoint import Checkpointer

    assert Checkpointer(workdir).latest_step() == 8


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_together_and_agree(tmp_path):
    """Two local processes under jax.distributed (gloo on CPU), one device each."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    address = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "realsys_cli", "-q", "train-classifier", "--dataset", TINY,
               "--epochs", "1", "--batch-size", "32", "--workdir", str(tmp_path / "w"), "--json",
               "--coordinator-address", address, "--num-processes", "2"]
    procs = [subprocess.Popen(command + ["--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        errors = [p.communicate()[1][-1000:] for p in procs]  # reaps them and closes the pipes
        pytest.fail(f"the two processes did not finish in 240 s: {errors}")
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    results = [json.loads(out) for out, _ in outputs]  # stdout is exactly one JSON object
    assert [r["processes"] for r in results] == [2, 2]
    assert [r["devices"] for r in results] == [2, 2]
    assert results[0]["eval_loss"] == results[1]["eval_loss"]
    assert results[0]["eval_accuracy"] == results[1]["eval_accuracy"]
    assert results[0]["steps"] == 8  # 256 examples / global batch 32


def test_bf16_compute_keeps_float32_params_and_a_close_loss():
    steps32, state32, batch = _setup()
    steps16, state16, _ = _setup(dtype="bfloat16")
    state32, m32 = steps32.make_train_step()(state32, batch)
    state16, m16 = steps16.make_train_step()(state16, batch)
    assert {x.dtype for x in jax.tree.leaves(state16["params"])} == {jnp.dtype("float32")}
    assert np.isfinite(float(m16["loss"]))
    assert float(m16["loss"]) == pytest.approx(float(m32["loss"]), rel=0.05)
