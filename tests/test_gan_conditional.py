"""train-gan's class-conditional DCGAN (conditional=true): G's one-hot class after z, D's
projection term, balanced classes in every z, the labels reaching D, and exact resume."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from trees import assert_trees_equal

from realsys_cli.errors import ConfigError
from realsys_cli.gan.config import RESUMABLE_CHANGES, GanConfig
from realsys_cli.gan.steps import build
from realsys_cli.models import count_params
from realsys_cli.models.dcgan import Discriminator, Generator

K = 10
COND = GanConfig(latent_dim=8, width=4, conditional=True)


def _batch(labels, side: int = 28, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    n = len(labels)
    return {"image": jnp.asarray(rng.integers(0, 256, (n, side, side, 1), np.uint8)),
            "label": jnp.asarray(labels, jnp.int32)}


def test_g_takes_the_one_hot_class_after_z_and_d_has_one_projection_map_per_class():
    plain = build(GanConfig(latent_dim=8, width=4), image_size=28, channels=1,
                  num_classes=K)[1]  # conditional=false: the class count is ignored
    steps, cond = build(COND, image_size=28, channels=1, num_classes=K)
    # G's first layer: (nz + K) x 7 x 7 x 2w instead of nz x 7 x 7 x 2w
    assert count_params(cond["g_params"]) - count_params(plain["g_params"]) == K * 7 * 7 * 8
    # D: one (7, 7, 2w) map per class, nothing else new
    assert count_params(cond["d_params"]) - count_params(plain["d_params"]) == K * 7 * 7 * 8
    assert steps.num_classes == K


def test_a_conditional_gan_needs_labelled_classes():
    with pytest.raises(ConfigError, match="conditional=false"):
        build(COND, image_size=28, channels=1, num_classes=1)
    assert "conditional" not in RESUMABLE_CHANGES


def test_sample_z_asks_for_every_class_equally_and_class_of_reads_it_back():
    steps, _ = build(COND, image_size=28, channels=1, num_classes=K)
    z = steps.sample_z(jax.random.key(3), 25)
    assert z.shape == (25, 8 + K)
    tail = np.asarray(z[:, 8:])
    assert set(np.unique(tail)) == {0.0, 1.0} and np.all(tail.sum(1) == 1)  # one-hot
    labels = np.asarray(steps.class_of(z))
    np.testing.assert_array_equal(labels, tail.argmax(1))
    counts = np.bincount(labels, minlength=K)
    assert sorted(counts) == [2] * 5 + [3] * 5  # 25 over 10 classes, balanced
    assert np.all(np.abs(np.asarray(z[:, :8])) <= 1)  # the noise is still U(-1, 1)
    plain, _ = build(GanConfig(latent_dim=8, width=4), image_size=28, channels=1)
    assert plain.sample_z(jax.random.key(3), 25).shape == (25, 8)
    assert plain.class_of(z) is None


def test_the_projection_term_by_hand_and_unlabelled_images_take_their_best_class():
    d = Discriminator(image_size=28, channels=1, width=4, num_classes=3, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (5, 28, 28, 1), minval=-1.0, maxval=1.0)
    per_class = jnp.stack([d(x, jnp.full((5,), y, jnp.int32)) for y in range(3)], axis=1)
    # logit(x, y) = logit0(x) + <embed[y], h(x)>: with embed[y] set to 0 the term vanishes,
    # and doubling embed[y] doubles (logit(x, y) - logit0(x))
    embed = d.embed[...]
    d.embed[...] = jnp.zeros_like(embed)
    base = d(x, jnp.zeros((5,), jnp.int32))
    d.embed[...] = 2 * embed
    doubled = jnp.stack([d(x, jnp.full((5,), y, jnp.int32)) for y in range(3)], axis=1)
    np.testing.assert_allclose(doubled - base[:, None], 2 * (per_class - base[:, None]),
                               rtol=1e-4, atol=1e-6)
    assert float(jnp.std(per_class - base[:, None])) > 0  # the classes do differ
    d.embed[...] = embed
    # no labels: the realness of each image as its best class (fool-screen's use)
    np.testing.assert_allclose(d(x), per_class.max(axis=1), rtol=1e-5, atol=1e-6)
    mixed = jnp.asarray([0, 2, 1, 1, 0], jnp.int32)
    np.testing.assert_allclose(d(x, mixed), per_class[jnp.arange(5), mixed], rtol=1e-5,
                               atol=1e-6)


def test_g_draws_a_different_image_for_each_class_from_the_same_noise():
    g = Generator(latent_dim=8, image_size=28, channels=1, width=4, num_classes=K,
                  rngs=nnx.Rngs(0))
    noise = jnp.tile(jax.random.uniform(jax.random.key(0), (1, 8)), (K, 1))
    z = jnp.concatenate([noise, jnp.eye(K)], axis=1)  # the same noise, each class once
    images = np.asarray(g(z))
    assert images.shape == (K, 28, 28, 1)
    assert min(np.abs(images[i] - images[j]).max() for i in range(K) for j in range(i)) > 0


def test_the_train_step_shows_d_the_real_labels():
    steps, state = build(COND, image_size=28, channels=1, num_classes=K)
    step = jax.jit(steps.train_step)
    labels = np.arange(8) % K
    a, metrics_a = step(state, _batch(labels))
    b, metrics_b = step(state, _batch((labels + 1) % K))  # the same images, other labels
    assert float(metrics_a["d_loss"]) != float(metrics_b["d_loss"])
    again, _ = step(state, _batch(labels))
    assert_trees_equal(a, again)  # deterministic: only the labels made the difference


def test_a_conditional_checkpoint_continues_exactly(tmp_path):
    """4 steps straight against 2, a checkpoint, a restore into the template `realsys sample`
    builds, and 2 more: the whole state to the bit (the projection maps included)."""
    from realsys_cli.training.checkpoint import Checkpointer

    cfg = GanConfig(latent_dim=8, width=4, conditional=True, ema_decay=0.99, loss="hinge",
                    spectral_norm=True)
    steps, state = build(cfg, image_size=28, channels=1, total_steps=4, num_classes=K)
    step = steps.make_train_step()
    batches = [_batch(np.arange(4) + i, seed=i) for i in range(4)]
    straight = state
    for batch in batches:
        straight, _ = step(straight, batch)
    _, half = build(cfg, image_size=28, channels=1, total_steps=4, num_classes=K)
    for batch in batches[:2]:
        half, _ = step(half, batch)
    saver = Checkpointer(tmp_path)
    saver.save(2, half, {"step": 2})
    saver.close()
    template = jax.eval_shape(lambda: build(cfg, image_size=28, channels=1,
                                            num_classes=K)[1])
    resumed, _ = Checkpointer(tmp_path, read_only=True).restore(template)
    for batch in batches[2:]:
        resumed, _ = step(resumed, batch)
    assert "embed" in {str(p[0]) for p, _ in nnx.to_flat_state(straight["d_params"])}
    assert_trees_equal(straight, resumed)


def test_class_index_takes_a_name_or_an_index_and_refuses_an_unconditional_gan():
    from types import SimpleNamespace

    from realsys_cli.gan.sample import class_index

    facts = SimpleNamespace(class_names=("zero", "one", "two"))
    cond = SimpleNamespace(workdir="W", facts=facts, steps=SimpleNamespace(num_classes=3))
    assert class_index(cond, "two") == 2 and class_index(cond, "1") == 1
    for wrong in ("3", "five", "-1"):
        with pytest.raises(ConfigError, match="classes are zero, one, two"):
            class_index(cond, wrong)
    plain = SimpleNamespace(workdir="W", facts=facts, steps=SimpleNamespace(num_classes=0))
    with pytest.raises(ConfigError, match="not class-conditional"):
        class_index(plain, "1")


@pytest.mark.slow  # a tiny conditional train-gan run and its judge, ~40 s on 2 cores
def test_a_conditional_run_trains_and_samples_one_class(tmp_path, monkeypatch):
    import json

    from test_bad_inputs import assert_one_line_error
    from typer.testing import CliRunner

    from realsys_cli.cli import app

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    workdir = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train-gan", "--dataset", "digits/train=256,test=64", "--epochs", "1", "-b", "32",
        "--set", "width=4", "--set", "conditional=true", "--set", "fid_samples=20",
        "--set", "grid_samples=10", "-w", str(workdir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["conditional"] is True and report["steps"] == 8
    # the fixed z of the FID samples asks for each digit twice: the judge's coverage counts
    # what G drew, so it need not be 0.1 each, but it sums to 1
    assert sum(report["class_coverage"].values()) == pytest.approx(1.0, abs=1e-3)
    grid = CliRunner().invoke(app, ["sample", "--from", str(workdir), "--class", "7", "-n", "4",
                                    "--out", str(tmp_path / "sevens.png"), "--json"])
    assert grid.exit_code == 0, grid.output
    assert json.loads(grid.stdout)["class"] == "7" and (tmp_path / "sevens.png").exists()
    for args in (["--class", "12"], ["--class", "7", "--score"]):
        assert_one_line_error(["sample", "--from", str(workdir), *args,
                               "--out", str(tmp_path / "x.png")], 2 if "--score" in args else 1,
                              [tmp_path])
