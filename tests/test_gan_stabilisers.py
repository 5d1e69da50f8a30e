"""The GAN's stabilisers (issue 15): spectral normalisation in D, the hinge loss, DiffAugment,
the moving average of G's weights, G's own Adam settings (TTUR). Each is off by default, each is
checked against a hand computation, and a run with all of them on resumes exactly. Tiny nets
(width 4, 28 px) on the CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from interrupt import interrupt_at_step
from trees import assert_trees_equal

from realsys_cli.gan import diffaugment
from realsys_cli.gan.config import DIFFAUGMENT_TRANSFORMS, GanConfig, diffaugment_policy
from realsys_cli.gan.sample import TrainedGan
from realsys_cli.gan.steps import (
    GanSteps,
    build,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from realsys_cli.gan.train import GanFacts, train_and_evaluate
from realsys_cli.models import count_params
from realsys_cli.models.dcgan import dcgan_init
from realsys_cli.models.spectral_norm import (
    SpectralNormConv,
    SpectralVector,
    kernel_matrix,
    power_iteration,
    top_singular_value,
)

TINY = "digits/train=256,test=64"
# Every stabiliser on at once (SNGAN's D and loss, DiffAugment, EMA, TTUR's rates and betas).
ALL_ON = dict(spectral_norm=True, d_norm="none", loss="hinge",
              diffaugment="color,translation,cutout", ema_decay=0.99, learning_rate=4e-4,
              g_learning_rate=1e-4, beta1=0.0, beta2=0.9, g_beta1=0.5, g_beta2=0.99)


def _batch(n: int = 4, side: int = 28, channels: int = 1, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (n, side, side, channels), np.uint8))}


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def _u_vectors(d_rest) -> dict[str, np.ndarray]:
    """Each spectral-norm layer's u, by its path in D's non-Param state."""
    flat = nnx.to_flat_state(d_rest)
    return {"/".join(map(str, path)): np.asarray(var[...]) for path, var in flat
            if isinstance(var, SpectralVector)}


# ------------------------------------------------------------------------ spectral norm
def test_power_iteration_converges_to_the_largest_singular_value():
    """50 iterations on a random (k*k*Cin, Cout) = (48, 8) matrix: the estimate ||W u|| is
    numpy's largest singular value to 1e-3, and u its right singular vector."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(48, 8)).astype(np.float32)
    u = jnp.asarray(rng.normal(size=8).astype(np.float32))
    u = u / jnp.linalg.norm(u)
    first = float(top_singular_value(jnp.asarray(w), u))
    step = jax.jit(power_iteration)
    for _ in range(50):
        u = step(jnp.asarray(w), u)
    _, s, vt = np.linalg.svd(w)
    assert float(top_singular_value(jnp.asarray(w), u)) == pytest.approx(s[0], rel=1e-3)
    assert abs(float(np.dot(np.asarray(u), vt[0]))) == pytest.approx(1.0, abs=1e-3)
    assert first < 0.9 * s[0]  # a random start is far from it: the iterations did the work


def test_spectral_norm_conv_normalises_its_kernel_and_iterates_only_when_asked():
    layer = SpectralNormConv(3, 8, 4, 2, 1, kernel_init=dcgan_init(), rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32))
    u0 = np.asarray(layer.u[...])
    assert np.linalg.norm(u0) == pytest.approx(1.0, rel=1e-5)  # u starts as a unit vector
    y = layer(x)  # no iteration: u is unchanged, the output is the conv with W / ||W u0||
    np.testing.assert_array_equal(np.asarray(layer.u[...]), u0)
    w = np.asarray(layer.kernel[...])
    sigma0 = np.linalg.norm(w.reshape(-1, 8) @ u0)
    ref = jax.lax.conv_general_dilated(x, jnp.asarray(w / sigma0), (2, 2), ((1, 1), (1, 1)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert y.shape == (2, 4, 4, 8)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-4, atol=1e-6)

    @nnx.jit
    def iterate(layer, x):
        return layer(x, power_iteration=True)

    # Power iteration converges as (s2 / s1)^2 per step: this random init's top two singular
    # values are within 1% of each other, so give the kernel a known spectrum with a gap.
    rng = np.random.default_rng(2)
    left, _ = np.linalg.qr(rng.normal(size=(48, 8)))
    right, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    spectrum = np.array([0.3, 0.2, 0.15, 0.1, 0.08, 0.05, 0.03, 0.01])
    layer.kernel[...] = jnp.asarray((left * spectrum @ right.T).reshape(4, 4, 3, 8), jnp.float32)
    for _ in range(50):
        iterate(layer, x)
    top = np.linalg.svd(np.asarray(kernel_matrix(layer.normalised_kernel())), compute_uv=False)
    assert top[0] == pytest.approx(1.0, rel=1e-3)
    assert float(layer.sigma()) == pytest.approx(0.3, rel=1e-3)


def test_d_with_spectral_norm_has_the_same_parameters_and_its_u_in_d_rest():
    plain = build(GanConfig(latent_dim=8, width=4), image_size=28, channels=1)[1]
    sn = build(GanConfig(latent_dim=8, width=4, spectral_norm=True), image_size=28,
               channels=1)[1]
    bare = build(GanConfig(latent_dim=8, width=4, spectral_norm=True, d_norm="none"),
                 image_size=28, channels=1)[1]
    # The paper's D at width 4: 64 + 512 + 392 kernel weights and BatchNorm(8)'s 16.
    assert count_params(plain["d_params"]) == count_params(sn["d_params"]) == 984
    assert not _u_vectors(plain["d_rest"])
    assert {k: v.shape for k, v in _u_vectors(sn["d_rest"]).items()} == {
        "first/u": (4,), "downs/0/u": (8,), "out/u": (1,)}  # one u (Cout,) per layer
    # Without BatchNorm each convolution has a bias instead: 984 - 16 + 4 + 8 + 1.
    assert count_params(bare["d_params"]) == 981
    assert "norms" not in bare["d_rest"] or not jax.tree.leaves(bare["d_rest"]["norms"])


def test_a_train_step_advances_u_by_exactly_one_power_iteration():
    """D runs three times per step (real, fake, G's step); u moves once, from the weights the
    step started with."""
    steps, state = build(GanConfig(latent_dim=8, width=4, spectral_norm=True), image_size=28,
                         channels=1)
    u0 = _u_vectors(state["d_rest"])
    kernels = {"first/u": state["d_params"]["first"]["kernel"][...],
               "downs/0/u": state["d_params"]["downs"][0]["kernel"][...],
               "out/u": state["d_params"]["out"]["kernel"][...]}
    kernels = {k: np.asarray(v) for k, v in kernels.items()}
    new, _ = jax.jit(steps.train_step)(state, _batch())
    u1 = _u_vectors(new["d_rest"])
    for name, kernel in kernels.items():
        matrix = jnp.asarray(kernel_matrix(jnp.asarray(kernel)))
        once = np.asarray(power_iteration(matrix, jnp.asarray(u0[name])))
        np.testing.assert_allclose(u1[name], once, rtol=1e-5, atol=1e-6, err_msg=name)
        if name != "out/u":  # (the 1-column out layer's u is +-1 after any iteration)
            twice = np.asarray(power_iteration(matrix, jnp.asarray(once)))
            assert np.abs(u1[name] - twice).max() > 1e-4, name


# ----------------------------------------------------------------------------- hinge loss
def test_hinge_losses_on_hand_made_logits():
    real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-3.0, 0.0, 0.25])
    # D: mean relu(1 - real) = (0 + 0.5 + 2) / 3, mean relu(1 + fake) = (0 + 1 + 1.25) / 3
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(4.75 / 3, rel=1e-6)
    # G: -mean fake = -(-3 + 0 + 0.25) / 3
    assert float(hinge_generator_loss(fake)) == pytest.approx(2.75 / 3, rel=1e-6)
    # Beyond the margins D gets nothing more: +1 / -1 and past them cost 0.
    assert float(hinge_discriminator_loss(jnp.array([1.0, 5.0]), jnp.array([-1.0, -7.0]))) == 0
    steps, _ = build(GanConfig(latent_dim=8, width=4, loss="hinge"), image_size=28, channels=1)
    assert float(steps.d_loss(real, fake)) == pytest.approx(4.75 / 3, rel=1e-6)
    assert float(steps.g_loss(fake)) == pytest.approx(2.75 / 3, rel=1e-6)
    with pytest.raises(ValueError, match="hinge loss has none"):
        GanConfig(loss="hinge", real_label=0.9)


# ---------------------------------------------------------------------------- DiffAugment
def _images(n: int = 4, side: int = 16, channels: int = 3, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(-1, 1, (n, side, side, channels)).astype(np.float32))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_diffaugment_keeps_shape_and_dtype_and_each_transform_changes_the_images(dtype):
    x = _images().astype(dtype)
    key = jax.random.key(0)
    out = diffaugment.augment(key, x, DIFFAUGMENT_TRANSFORMS)
    assert out.shape == x.shape and out.dtype == dtype
    assert diffaugment.augment(key, x, ()) is x  # no policy: the images untouched
    for name in DIFFAUGMENT_TRANSFORMS:
        one = diffaugment.augment(key, x, (name,))
        assert one.shape == x.shape and one.dtype == dtype, name
        assert float(jnp.abs(one.astype(jnp.float32) - x.astype(jnp.float32)).max()) > 0.05, name
    # Same key, same augmentation; another key, other parameters.
    again = diffaugment.augment(key, x, DIFFAUGMENT_TRANSFORMS)
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(again, np.float32))
    other = diffaugment.augment(jax.random.key(1), x, DIFFAUGMENT_TRANSFORMS)
    assert not np.array_equal(np.asarray(out, np.float32), np.asarray(other, np.float32))


def test_translation_moves_by_the_shift_and_fills_zeros():
    x = jnp.arange(2 * 5 * 5, dtype=jnp.float32).reshape(2, 5, 5, 1) + 1  # no zeros
    same = diffaugment.translate(x, jnp.array([0, 0]), jnp.array([0, 0]))
    np.testing.assert_array_equal(np.asarray(same), np.asarray(x))
    moved = np.asarray(diffaugment.translate(x, jnp.array([1, -2]), jnp.array([0, 1])))
    ref = np.asarray(x)
    # image 0: down by 1: row 0 is zeros, row i is the input's row i - 1
    np.testing.assert_array_equal(moved[0, 0], 0)
    np.testing.assert_array_equal(moved[0, 1:], ref[0, :-1])
    # image 1: up by 2 and right by 1: the last two rows and the first column are zeros
    np.testing.assert_array_equal(moved[1, 3:], 0)
    np.testing.assert_array_equal(moved[1, :, 0], 0)
    np.testing.assert_array_equal(moved[1, :3, 1:], ref[1, 2:, :-1])
    # The random shifts stay within an eighth of the side (2 of 16 px): at most 2 zero rows.
    shifted = np.asarray(diffaugment.translation(jax.random.key(3), _images(n=64) + 5))
    zero_rows = (shifted == 0).all(axis=(2, 3)).sum(axis=1)  # (64,)
    assert zero_rows.max() == 2 and zero_rows.min() == 0


def test_cutout_zeroes_a_square_of_half_the_side_clipped_at_the_borders():
    mask = np.asarray(diffaugment.cutout_mask(jnp.array([4, 0]), jnp.array([4, 8]), 8, 8))
    assert mask.shape == (2, 8, 8, 1)
    centred = np.ones((8, 8))
    centred[2:6, 2:6] = 0  # side 4 from centre (4, 4): rows and columns 2..5
    np.testing.assert_array_equal(mask[0, ..., 0], centred)
    corner = np.ones((8, 8))
    corner[0:2, 6:8] = 0  # centre (0, 8): rows -2..1 and columns 6..9, clipped
    np.testing.assert_array_equal(mask[1, ..., 0], corner)
    x = _images(n=16) + 5  # no zeros before the cutout
    cut = np.asarray(diffaugment.cutout(jax.random.key(0), x))
    zeros = (cut == 0).all(axis=3).sum(axis=(1, 2))  # zeroed pixels per image
    assert zeros.max() == 64 and zeros.min() > 0  # at most 8 x 8 of 16 x 16, always some


def test_diffaugment_is_differentiable():
    x, w = _images(), _images(seed=1)

    def loss(x):
        return jnp.sum(diffaugment.augment(jax.random.key(0), x, DIFFAUGMENT_TRANSFORMS) * w)

    grad = np.asarray(jax.grad(loss)(x))
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0

    def moved(x):  # without colour (whose means reach every pixel): a pixel cut out or
        return jnp.sum(diffaugment.augment(  # shifted out of the image gets no gradient
            jax.random.key(0), x, ("translation", "cutout")) * w)

    grad = np.asarray(jax.grad(moved)(x))
    assert np.isfinite(grad).all() and (grad == 0).any() and (grad != 0).mean() > 0.5


def test_diffaugment_policy_is_checked():
    assert diffaugment_policy("") == ()
    assert diffaugment_policy("translation, cutout") == ("translation", "cutout")
    assert set(diffaugment.TRANSFORMS) == set(DIFFAUGMENT_TRANSFORMS)
    with pytest.raises(ValueError, match="unknown transform 'flip'"):
        GanConfig(diffaugment="color,flip")
    with pytest.raises(ValueError, match="twice"):
        GanConfig(diffaugment="color,color")


@pytest.mark.slow
def test_every_image_d_sees_is_augmented_with_the_same_transforms_and_fresh_keys(monkeypatch):
    """Per step: D's real batch, D's fake batch and each of G's updates (2 here) go through
    the whole policy, in order, each call with a key of its own."""
    calls: list[str] = []
    keys: dict[str, set] = {name: set() for name in DIFFAUGMENT_TRANSFORMS}
    real = dict(diffaugment.TRANSFORMS)

    def recording(name):
        def transform(key, x):
            calls.append(name)  # at trace time: once per call in the step
            jax.debug.callback(lambda k: keys[name].add(tuple(np.asarray(k).ravel())),
                               jax.random.key_data(key))
            return real[name](key, x)
        return transform

    for name in DIFFAUGMENT_TRANSFORMS:
        monkeypatch.setitem(diffaugment.TRANSFORMS, name, recording(name))
    cfg = GanConfig(latent_dim=8, width=4, g_steps=2, diffaugment="color,translation,cutout")
    steps, state = build(cfg, image_size=28, channels=1)
    new, metrics = jax.jit(steps.train_step)(state, _batch())
    jax.block_until_ready(new)
    assert calls == list(DIFFAUGMENT_TRANSFORMS) * 4  # real, fake (D), fake (G twice)
    assert all(len(k) == 4 for k in keys.values()), {n: len(k) for n, k in keys.items()}
    assert all(np.isfinite(float(v)) for v in metrics.values())


# ----------------------------------------------------------------------------------- EMA
def test_the_weight_average_follows_the_warmup_formula_for_two_steps():
    """decay_t = min(ema_decay, (1 + t) / (10 + t)): 0.1 at step 0 (the warm-up), then 0.15
    at step 1 (the cap, below 2 / 11)."""
    steps, s0 = build(GanConfig(latent_dim=8, width=4, ema_decay=0.15), image_size=28,
                      channels=1)
    step = jax.jit(steps.train_step)
    s1, _ = step(s0, _batch(seed=1))
    s2, _ = step(s1, _batch(seed=2))
    p0, p1, p2 = (jax.tree.leaves(_host(s["g_params"])) for s in (s0, s1, s2))
    ema1, ema2 = jax.tree.leaves(_host(s1["g_ema"])), jax.tree.leaves(_host(s2["g_ema"]))
    for a, b, c, e1, e2 in zip(p0, p1, p2, ema1, ema2):
        np.testing.assert_allclose(e1, 0.1 * a + 0.9 * b, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(e2, 0.15 * (0.1 * a + 0.9 * b) + 0.85 * c, rtol=1e-5,
                                   atol=1e-7)


def test_samples_come_from_the_weight_average_when_there_is_one():
    """`realsys sample` (TrainedGan.sample) draws from g_ema: with an all-zero average every
    pixel is tanh(0), mid-grey 128; G's own weights (untrained: outputs near 0) give others."""
    cfg = GanConfig(latent_dim=8, width=4, ema_decay=0.99)
    steps, state = build(cfg, image_size=28, channels=1)
    facts = GanFacts("digits", 28, 1, tuple("0123456789"))
    zeros = dict(state, g_ema=jax.tree.map(jnp.zeros_like, state["g_params"]))
    z = steps.sample_z(jax.random.key(0), 4)
    averaged = TrainedGan(Path("."), cfg, facts, steps, zeros, 0, 0.0, "latest").sample(z)
    assert (averaged == 128).all()
    own = {k: v for k, v in zeros.items() if k != "g_ema"}
    raw = TrainedGan(Path("."), cfg, facts, steps, own, 0, 0.0, "latest").sample(z)
    assert not (raw == 128).all()


# ---------------------------------------------------------------------------------- TTUR
def _adam_by_hand(lr: float, b1: float, b2: float, grads: list[float]) -> list[float]:
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        out.append(-lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8))
    return out


def test_d_and_g_have_their_own_adam_rates_and_betas():
    steps, _ = build(GanConfig(latent_dim=8, width=4, **{k: ALL_ON[k] for k in (
        "learning_rate", "g_learning_rate", "beta1", "beta2", "g_beta1", "g_beta2")}),
        image_size=28, channels=1)
    assert steps.g_tx is not steps.d_tx
    grads = [2.0, 1.0, -0.5]  # two steps the betas shape (the first is -lr for any betas)
    for tx, (lr, b1, b2) in ((steps.d_tx, (4e-4, 0.0, 0.9)), (steps.g_tx, (1e-4, 0.5, 0.99))):
        params = jnp.zeros(())
        opt = tx.init(params)
        got = []
        for g in grads:
            update, opt = tx.update(jnp.asarray(g), opt, params)
            got.append(float(update))
        np.testing.assert_allclose(got, _adam_by_hand(lr, b1, b2, grads), rtol=1e-5)
    # -1 means "D's": G's betas follow beta1 / beta2, and one optimizer serves both nets.
    shared, _ = build(GanConfig(latent_dim=8, width=4, beta1=0.0, beta2=0.9), image_size=28,
                      channels=1)
    assert shared.g_tx is shared.d_tx
    assert GanConfig(beta1=0.0, beta2=0.9, g_learning_rate=1e-4).g_adam() == (1e-4, 0.0, 0.9)
    for bad in (dict(beta2=1.0), dict(g_beta1=1.5), dict(g_beta2=-0.5)):
        with pytest.raises(ValueError, match="must be in"):
            GanConfig(**bad)


# --------------------------------------------------------------------- off by default
def test_defaults_are_the_paper_and_explicitly_off_options_change_nothing():
    cfg = GanConfig()
    assert (cfg.spectral_norm, cfg.d_norm, cfg.loss, cfg.diffaugment, cfg.ema_decay) == (
        False, "batch", "nonsaturating", "", 0.0)
    assert cfg.g_adam() == (cfg.learning_rate, cfg.beta1, 0.999) == (2e-4, 0.5, 0.999)
    off = dict(spectral_norm=False, d_norm="batch", loss="nonsaturating", diffaugment="",
               beta2=0.999, g_beta1=0.5, g_beta2=0.999, g_learning_rate=2e-4)
    results = []
    for extra in ({}, off):
        steps, state = build(GanConfig(latent_dim=8, width=4, **extra), image_size=28,
                             channels=1)
        assert steps.g_tx is steps.d_tx and steps.augment_policy == () and "g_ema" not in state
        results.append(jax.jit(steps.train_step)(state, _batch()))
    assert_trees_equal(results[0], results[1])


def test_the_new_fields_are_not_resumable_changes():
    from realsys_cli.gan.config import RESUMABLE_CHANGES

    new = {"spectral_norm", "d_norm", "loss", "diffaugment", "beta2", "g_beta1", "g_beta2"}
    assert not new & RESUMABLE_CHANGES
    assert new <= {f.name for f in dataclasses.fields(GanConfig)}


# ---------------------------------------------------------------------------- exact resume
@pytest.mark.slow
def test_a_checkpoint_with_every_stabiliser_on_continues_exactly(tmp_path):
    """4 steps straight, against 2 steps, a checkpoint, a restore into the template that
    `realsys sample` and a resumed run build (jax.eval_shape of `build`), and 2 more: the whole
    state (both nets, D's spectral vectors, G's average, both Adam states, step and key) to the
    bit. Everything the stabilisers add lives in the state or follows its step and key."""
    from realsys_cli.training.checkpoint import Checkpointer

    cfg = GanConfig(latent_dim=8, width=4, **ALL_ON)
    steps, state = build(cfg, image_size=28, channels=1, total_steps=4)
    step = steps.make_train_step()
    batches = [_batch(seed=i) for i in range(4)]
    straight = state
    for batch in batches:
        straight, _ = step(straight, batch)

    _, half = build(cfg, image_size=28, channels=1, total_steps=4)  # the same init again
    for batch in batches[:2]:
        half, _ = step(half, batch)
    saver = Checkpointer(tmp_path)
    saver.save(2, half, {"step": 2})
    saver.close()
    template = jax.eval_shape(lambda: build(cfg, image_size=28, channels=1)[1])
    resumed, meta = Checkpointer(tmp_path, read_only=True).restore(template)
    assert meta["step"] == 2 and int(resumed["step"]) == 2
    for batch in batches[2:]:
        resumed, _ = step(resumed, batch)
    assert "g_ema" in straight and len(_u_vectors(straight["d_rest"])) == 3  # compared too
    assert_trees_equal(straight, resumed)


@pytest.mark.slow  # three tiny train-gan runs and a judge, ~50 s on 2 cores
def test_resume_is_exact_with_every_stabiliser_on(tmp_path):
    """train-gan itself: 8 steps straight, against 4 steps, Ctrl-C, and the same command again
    for the other 4: the whole final state to the bit, and the same FID."""
    common = dict(dataset=TINY, width=4, batch_size=32, num_epochs=1, fid_samples=16,
                  grid_samples=4, judge_epochs=1, **ALL_ON)
    straight = train_and_evaluate(GanConfig(**common), tmp_path / "straight")
    cfg = GanConfig(**common, judge=str(tmp_path / "straight" / "judge"))
    with interrupt_at_step(GanSteps, 4):
        train_and_evaluate(cfg, tmp_path / "resumed")
    resumed = train_and_evaluate(cfg, tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == straight["steps"] == 8

    from realsys_cli.gan.sample import load_generator

    a, b = (load_generator(tmp_path / name).state for name in ("straight", "resumed"))
    assert "g_ema" in a and len(_u_vectors(a["d_rest"])) == 3  # compared, not skipped
    assert_trees_equal(a, b)
    assert resumed["fid"] == straight["fid"]
    assert resumed["fid_own_weights"] == straight["fid_own_weights"]
