"""DCGAN's nets, transposed convolution, losses and FID, checked against references and hand
computations (no training here: see test_gan_train.py)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from trees import assert_trees_close

from realsys_cli.errors import ConfigError
from realsys_cli.gan import fid
from realsys_cli.gan.config import GanConfig
from realsys_cli.gan.steps import adam, build, discriminator_loss, generator_loss
from realsys_cli.models import count_params
from realsys_cli.models.dcgan import (
    Discriminator,
    Generator,
    conv_general_dilated,
    conv_transpose,
    space_to_depth_conv,
    strided_conv,
)
from realsys_cli.pictures import to_uint8


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3), (64, 1)])
def test_output_shapes_for_every_supported_size(size, channels):
    rngs = nnx.Rngs(params=0)
    g = Generator(latent_dim=10, image_size=size, channels=channels, width=4, rngs=rngs)
    d = Discriminator(image_size=size, channels=channels, width=4, rngs=rngs)

    @nnx.jit
    def forward(g, d, z):
        images = g(z, train=True)
        return images, d(images, train=True)

    images, logits = forward(g, d, jnp.linspace(-1, 1, 30).reshape(3, 10))
    assert images.shape == (3, size, size, channels) and images.dtype == jnp.float32
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    # N(0, 0.02) init (the paper's): the largest kernel's std, to within sampling error.
    kernel = np.asarray(d.downs[-1].kernel[...] if len(d.downs) else g.project.kernel[...])
    assert abs(kernel.std() - 0.02) < 2e-3 and abs(kernel.mean()) < 2e-3


def test_training_mode_uses_the_batch_and_sampling_the_running_averages():
    """train=True normalises with the batch's statistics: an image depends on its batch-mates.
    train=False uses the running averages: a sample is the same alone or in a batch."""
    g = Generator(latent_dim=10, image_size=28, channels=1, width=4, rngs=nnx.Rngs(params=0))

    @nnx.jit
    def forward(g, z):
        return g(z, train=True), g(z[:1], train=True), g(z, train=False), g(z[:1], train=False)

    batch_train, alone_train, batch_eval, alone_eval = forward(
        g, jnp.linspace(-1, 1, 30).reshape(3, 10))
    assert np.abs(np.asarray(alone_train[0]) - np.asarray(batch_train[0])).max() > 1e-3
    np.testing.assert_allclose(np.asarray(alone_eval[0]), np.asarray(batch_eval[0]), rtol=1e-5,
                               atol=1e-6)


def test_unsupported_size_is_a_config_error():
    with pytest.raises(ConfigError, match="28, 32, 64"):
        Generator(image_size=48, rngs=nnx.Rngs(0))


def test_64px_nets_have_the_bench_parameter_counts():
    """peer_torch.py's DCGAN: G 3,576,704 / D 2,765,568 (nz 100, ngf = ndf = 64, no biases)."""
    g = nnx.eval_shape(lambda: Generator(latent_dim=100, image_size=64, channels=3, width=64,
                                         rngs=nnx.Rngs(0)))
    d = nnx.eval_shape(lambda: Discriminator(image_size=64, channels=3, width=64,
                                             rngs=nnx.Rngs(0)))
    assert count_params(g) == 3_576_704
    assert count_params(d) == 2_765_568
    assert g.ups[0].kernel.shape == (4, 4, 256, 512)  # 8x8x512 -> 16x16x256


def _reference(x, kernel, stride, padding):
    k = kernel.shape[0]
    pad = ((k - 1 - padding, k - 1 - padding),) * 2
    return jax.lax.conv_transpose(x, kernel, (stride, stride), pad,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  transpose_kernel=True)


@pytest.mark.parametrize("stride,padding,side", [(2, 1, 5), (1, 0, 1), (2, 0, 3)])
def test_conv_transpose_matches_lax_values_and_gradients(stride, padding, side):
    rng = np.random.default_rng(side)
    x = jnp.asarray(rng.normal(size=(2, side, side + 1, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(4, 4, 5, 3)), jnp.float32)
    out_shape = (2, (side - 1) * stride - 2 * padding + 4, side * stride - 2 * padding + 4, 5)
    weights = jnp.asarray(rng.normal(size=out_shape), jnp.float32)

    @jax.jit
    def both(x, kernel):
        def loss(fn):
            return lambda x, k: jnp.sum(jnp.tanh(fn(x, k, stride, padding)) * weights)

        return ((conv_transpose(x, kernel, stride, padding),
                 jax.grad(loss(conv_transpose), argnums=(0, 1))(x, kernel)),
                (_reference(x, kernel, stride, padding),
                 jax.grad(loss(_reference), argnums=(0, 1))(x, kernel)))

    (ours, ours_g), (ref, ref_g) = both(x, kernel)
    assert ours.shape == ref.shape == out_shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours_g, ref_g):  # d/dx and d/dkernel
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("side", [8, 6])
def test_strided_conv_matches_lax_values_and_gradients(side):
    """D's 4x4 / stride 2 / padding 1 convolution: its sub-pixel input gradient is lax's."""
    rng = np.random.default_rng(side)
    x = jnp.asarray(rng.normal(size=(2, side, side + 2, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(4, 4, 3, 5)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(2, side // 2, side // 2 + 1, 5)), jnp.float32)

    def reference(x, k):
        return jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(fn):
        return lambda x, k: jnp.sum(jnp.tanh(fn(x, k)) * weights)

    ref = jax.jit(jax.value_and_grad(loss(reference), argnums=(0, 1)))(x, kernel)
    for fast in (strided_conv, space_to_depth_conv):
        ours = jax.jit(jax.value_and_grad(loss(fast), argnums=(0, 1)))(x, kernel)
        np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
        for a, b in zip(ours[1], ref[1]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_discriminator_convolutions_take_the_fast_path_only_where_it_applies(monkeypatch):
    """nnx.Conv(conv_general_dilated=...) sends exactly D's stride-2 layers to strided_conv,
    and the whole D gives lax's logits and gradients."""
    import realsys_cli.models.dcgan as dcgan

    calls = []
    original = dcgan.strided_conv
    monkeypatch.setattr(dcgan, "strided_conv", lambda x, k: calls.append(k.shape) or original(x, k))
    d = Discriminator(image_size=32, channels=3, width=16, rngs=nnx.Rngs(0))
    images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)), jnp.float32)
    _, params, rest = nnx.split(d, nnx.Param, ...)

    def logits_sum(params, conv):
        net = nnx.merge(nnx.graphdef(d), params, rest, copy=True)
        for layer in (net.first, *net.downs, net.out):
            layer.conv_general_dilated = conv
        return jnp.sum(jnp.sin(net(images, train=True)))

    ours = jax.value_and_grad(logits_sum)(params, conv_general_dilated)
    # the first layer (3 colours) is space_to_depth_conv, the 4x4 stride-1 head plain lax
    assert calls == [(4, 4, 16, 32), (4, 4, 32, 64)]
    ref = jax.value_and_grad(logits_sum)(params, jax.lax.conv_general_dilated)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(ref[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_losses_on_hand_made_logits():
    ln2, ln3 = math.log(2.0), math.log(3.0)
    real, fake = jnp.array([0.0, ln3]), jnp.array([0.0, -ln3])
    # D: mean(-log sigmoid(real)) + mean(-log(1 - sigmoid(fake)))
    #  = (ln 2 + ln 4/3) / 2 + (ln 2 + ln 4/3) / 2
    assert float(discriminator_loss(real, fake)) == pytest.approx(ln2 + math.log(4 / 3),
                                                                  rel=1e-6)
    # G (non-saturating): mean(-log sigmoid(fake)) = (ln 2 + ln 4) / 2
    assert float(generator_loss(fake)) == pytest.approx(1.5 * ln2, rel=1e-6)
    # Saturated logits stay finite and near their limits.
    big = jnp.array([1000.0, -1000.0])
    assert float(discriminator_loss(big[:1], big[1:])) == pytest.approx(0.0, abs=1e-6)
    assert float(generator_loss(big[1:])) == pytest.approx(1000.0)


def test_one_sided_label_smoothing_moves_only_the_real_target():
    real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus by hand
    want = (0.9 * sp(-2) + 0.1 * sp(2) + 0.9 * sp(1) + 0.1 * sp(-1)) / 2 + sp(0.5)
    assert float(discriminator_loss(real, fake, 0.9)) == pytest.approx(want, rel=1e-6)
    # A D sure of every real image now pays for it: the smoothed loss is above the plain one.
    sure = jnp.array([20.0])
    assert float(discriminator_loss(sure, -sure, 0.9)) == pytest.approx(0.1 * 20, rel=1e-3)
    assert float(discriminator_loss(sure, -sure)) == pytest.approx(0.0, abs=1e-6)


def test_learning_rate_decays_linearly_to_zero_after_its_start():
    # Adam's update for a gradient that never changes sign is -lr(t) (m / sqrt(v) = 1).
    tx = adam(0.1, 0.5, decay_start=0.5, total_steps=4)
    params = jnp.zeros(())
    opt = tx.init(params)
    sizes = []
    for _ in range(5):
        update, opt = tx.update(jnp.ones(()), opt, params)
        sizes.append(-float(update))
    np.testing.assert_allclose(sizes, [0.1, 0.1, 0.1, 0.05, 0.0], atol=1e-6)
    constant = adam(0.1, 0.5)  # decay_start 1: the paper's constant rate, whatever total_steps
    update, _ = constant.update(jnp.ones(()), constant.init(params), params)
    assert -float(update) == pytest.approx(0.1, rel=1e-5)


@pytest.mark.slow
def test_instance_noise_follows_its_schedule_and_changes_what_d_sees():
    cfg = GanConfig(latent_dim=8, width=4, instance_noise=0.2)
    steps, state = build(cfg, image_size=28, channels=1, total_steps=10)
    stds = [float(steps.noise_std(jnp.int32(t))) for t in (0, 5, 10, 12)]
    np.testing.assert_allclose(stds, [0.2, 0.1, 0.0, 0.0], atol=1e-7)
    floor, _ = build(GanConfig(latent_dim=8, width=4, instance_noise=0.2,
                               instance_noise_final=0.05), image_size=28, channels=1,
                     total_steps=10)
    stds = [float(floor.noise_std(jnp.int32(t))) for t in (0, 4, 10, 12)]
    np.testing.assert_allclose(stds, [0.2, 0.14, 0.05, 0.05], atol=1e-7)
    constant, _ = build(GanConfig(latent_dim=8, width=4, instance_noise=0.2,
                                  instance_noise_final=0.2), image_size=28, channels=1,
                        total_steps=10)
    assert [float(constant.noise_std(jnp.int32(t))) for t in (0, 10)] == [
        pytest.approx(0.2), pytest.approx(0.2)]
    images = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1),
                                                                     np.uint8))}
    plain_steps, plain = build(GanConfig(latent_dim=8, width=4), image_size=28, channels=1)
    _, noisy_metrics = steps.train_step(state, images)
    _, plain_metrics = plain_steps.train_step(plain, images)
    # Same weights, same z; only the noise on D's inputs differs, and so does D's loss.
    assert math.isfinite(float(noisy_metrics["d_loss"]))
    assert float(noisy_metrics["d_loss"]) != pytest.approx(float(plain_metrics["d_loss"]),
                                                           rel=1e-4)
    assert float(noisy_metrics["spread"]) == pytest.approx(float(plain_metrics["spread"]))


def test_two_g_steps_update_g_twice_and_d_once():
    images = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1),
                                                                     np.uint8))}
    runs = {}
    for g_steps in (1, 2):
        steps, state = build(GanConfig(latent_dim=8, width=4, g_steps=g_steps), image_size=28,
                             channels=1)
        runs[g_steps] = steps.train_step(state, images)[0]
    one, two = runs[1], runs[2]
    for a, b in zip(jax.tree.leaves(one["d_params"]), jax.tree.leaves(two["d_params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # D: the same one update
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(one["g_params"]),
                                                   jax.tree.leaves(two["g_params"]))]
    assert all(moved)
    counts = [int(x) for x in jax.tree.leaves(two["g_opt"])  # the step counters
              if np.ndim(x) == 0 and np.issubdtype(np.asarray(x).dtype, np.integer)]
    assert counts and set(counts) == {2}  # Adam counted two G updates


def test_g_learning_rate_moves_only_g_faster():
    images = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1),
                                                                     np.uint8))}
    moves = {}
    for g_lr in (0.0, 4e-4):  # 0 = the shared 2e-4
        steps, state = build(GanConfig(latent_dim=8, width=4, g_learning_rate=g_lr),
                             image_size=28, channels=1)
        before = {k: jax.tree.leaves(jax.tree.map(np.asarray, state[k]))
                  for k in ("g_params", "d_params")}
        new = steps.train_step(state, images)[0]
        moves[g_lr] = {k: max(float(np.abs(np.asarray(b) - a).max())
                              for a, b in zip(before[k], jax.tree.leaves(new[k])))
                       for k in before}
    # Adam's first step moves every weight by about its rate: G twice as far, D the same.
    assert moves[4e-4]["g_params"] == pytest.approx(2 * moves[0.0]["g_params"], rel=1e-3)
    assert moves[4e-4]["d_params"] == pytest.approx(moves[0.0]["d_params"], rel=1e-6)


def test_to_uint8_maps_the_tanh_range():
    out = np.asarray(to_uint8(jnp.array([-1.0, 0.0, 1.0, 2.0, -3.0]), low=-1.0))
    assert out.tolist() == [0, 128, 255, 255, 0]


def _metrics_by_hand(steps, state, images: np.ndarray) -> dict[str, float]:
    """Step 0's metrics recomputed from the nets themselves: z from the state's key folded
    with the step, G(z) and D on the real and the generated batch, each with its own batch
    statistics, before any update."""

    @jax.jit
    def by_hand(state):
        z = steps.sample_z(jax.random.fold_in(state["key"], state["step"]), images.shape[0])
        fake = nnx.merge(steps.g_graphdef, state["g_params"], state["g_rest"])(z, train=True)
        d = nnx.merge(steps.d_graphdef, state["d_params"], state["d_rest"])
        real = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
        real_logits, fake_logits = d(real, train=True), d(fake, train=True)

        def spread(x):  # the per-pixel std over the batch, averaged
            return jnp.mean(jnp.std(x, axis=0))

        return {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
                "d_loss": jnp.mean(-jax.nn.log_sigmoid(real_logits))
                + jnp.mean(-jax.nn.log_sigmoid(-fake_logits)),
                "spread": spread(fake) / spread(real)}

    return {k: float(v) for k, v in by_hand(state).items()}


def test_one_step_changes_both_nets_and_stays_finite():
    cfg = GanConfig(latent_dim=16, width=4, latent_distribution="normal", ema_decay=0.999)
    steps, state = build(cfg, image_size=28, channels=1)
    before = {k: jax.tree.map(np.asarray, state[k]) for k in ("g_params", "d_params", "g_rest")}
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), np.uint8)
    expected = _metrics_by_hand(steps, state, images)  # before the step donates the state
    new, metrics = steps.make_train_step()(state, {"image": jnp.asarray(images)})
    for key in ("g_params", "d_params"):
        old_leaves, new_leaves = jax.tree.leaves(before[key]), jax.tree.leaves(new[key])
        assert all(np.isfinite(np.asarray(b)).all() for b in new_leaves)
        changed = [not np.array_equal(a, np.asarray(b)) for a, b in zip(old_leaves, new_leaves)]
        assert all(changed), key  # every tensor of both nets moved
    # G's BatchNorm running statistics moved too (it ran in training mode).
    assert not all(np.array_equal(a, np.asarray(b)) for a, b in
                   zip(jax.tree.leaves(before["g_rest"]), jax.tree.leaves(new["g_rest"])))
    assert int(new["step"]) == 1
    # The weight average after step 0: decay min(0.999, 1/10) = 0.1 of the old weights.
    for old, now, avg in zip(jax.tree.leaves(before["g_params"]),
                             jax.tree.leaves(new["g_params"]), jax.tree.leaves(new["g_ema"])):
        np.testing.assert_allclose(avg, 0.1 * old + 0.9 * np.asarray(now), rtol=1e-5, atol=1e-7)
    values = {k: float(v) for k, v in metrics.items()}
    assert all(math.isfinite(v) for v in values.values())
    # D(x) and D(G(z)) are D's mean outputs before its update, on this step's real and
    # generated batches; spread is the generated batch's per-pixel spread over the real one's.
    assert {k: values[k] for k in expected} == pytest.approx(expected, rel=1e-5)
    # D's loss is BCE(real, 1) + BCE(fake, 0): near 2 ln 2 for an untrained D.
    assert values["d_loss"] == pytest.approx(2 * math.log(2), abs=0.3)


def test_step_sharded_over_4_devices_equals_one_device_batchnorm_included():
    """The GAN's step, data parallel: the batch sharded over 4 devices, the state replicated,
    gives the one-device step's whole new state (both nets, both Adam states, BatchNorm
    statistics) within float tolerance.

    What "batch" means for BatchNorm across devices: the GLOBAL batch. The step is written for
    one batch and jitted; with the batch's rows spread over the "data" mesh axis, XLA computes
    every BatchNorm mean and variance over all B rows on all devices (an all-reduce), not over
    each device's B / 4. G normalises over the B generated images; D over the B real images,
    and separately over the B generated ones. The shards below are made to differ (dark rows on
    the first device, bright on the last), so statistics per device would not pass; G's first
    BatchNorm is also checked by hand against the global batch."""
    from realsys_cli.training import distributed

    assert jax.device_count() == 4
    cfg = GanConfig(latent_dim=8, width=4)
    rows = np.random.default_rng(0).integers(0, 64, (8, 28, 28, 1))
    images = (rows + 64 * (np.arange(8) // 2)[:, None, None, None]).astype(np.uint8)

    steps, state = build(cfg, image_size=28, channels=1)
    # By hand: G's first BatchNorm sees project(z) = z @ kernel, (B, 7, 7, 8); after one step in
    # training mode its running mean is 0.9 * 0 + 0.1 * the batch mean and its running variance
    # 0.9 * 1 + 0.1 * the (biased) batch variance, over the B x 7 x 7 positions.
    z = np.asarray(steps.sample_z(jax.random.fold_in(state["key"], 0), 8))
    kernel = np.asarray(state["g_params"]["project"]["kernel"][...])  # (nz, 7, 7, 8)
    projected = np.einsum("bz,zhwc->bhwc", z, kernel)
    one, one_metrics = steps.make_train_step()(jax.device_put(state, jax.devices()[0]),
                                               {"image": images})

    steps, state = build(cfg, image_size=28, channels=1)  # afresh: the step donates its input
    mesh = distributed.data_mesh()
    batch = distributed.shard_batch({"image": images}, mesh)
    assert len(batch["image"].sharding.device_set) == 4
    four, four_metrics = steps.make_train_step()(distributed.replicate(state, mesh), batch)

    # atol 1e-6: on a CPU without AVX-512 (2026-12-02) one element in 32,768 of D's kernels
    # differed by 2e-7 (reductions summed in another order); statistics per device, or a
    # gradient not all-reduced, would move them by orders of magnitude more
    assert_trees_close(one, four, rtol=1e-5, atol=1e-6)
    assert {k: float(v) for k, v in four_metrics.items()} == pytest.approx(
        {k: float(v) for k, v in one_metrics.items()}, rel=1e-5)
    norm = four["g_rest"]["norms"][0]
    np.testing.assert_allclose(np.asarray(norm["mean"][...]), 0.1 * projected.mean((0, 1, 2)),
                               rtol=1e-4, atol=1e-9)
    batch_var = (np.asarray(norm["var"][...]) - 0.9) / 0.1
    np.testing.assert_allclose(batch_var, projected.var((0, 1, 2)), rtol=1e-3)
    # ... and not the mean of the 4 devices' own variances, which this check tells apart:
    per_device = projected.reshape(4, 2, 7, 7, 8).var((1, 2, 3)).mean(0)
    assert np.abs(batch_var / per_device - 1).max() > 1e-2


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=(2000, 6)) @ np.diag([1, 2, 3, 1, 0.5, 1])
    assert fid.fid(x, x) == pytest.approx(0.0, abs=1e-6)
    shifts = [0.1, 0.5, 2.0]
    values = [fid.fid(x, x + s) for s in shifts]
    # Same covariance: FID is exactly the squared distance of the means, 6 s^2.
    for s, v in zip(shifts, values):
        assert v == pytest.approx(6 * s * s, rel=1e-5)
    assert values == sorted(values)
    # Scaling by 2: ||mu||^2 + Tr(S + 4S - 2 (4 S^2)^(1/2)) = ||mu||^2 + Tr(S).
    expected = np.sum(x.mean(0) ** 2) + np.trace(np.cov(x, rowvar=False))
    assert fid.fid(x, 2 * x) == pytest.approx(expected, rel=1e-6)


def test_fid_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 1.0
    value = fid.fid(a, b)
    assert math.isfinite(value) and value > 64 * 0.5  # the mean shift alone is ~64


def test_class_coverage_and_confident_fraction():
    probs = np.array([[0.95, 0.05, 0.0], [0.6, 0.4, 0.0], [0.0, 0.05, 0.95], [0.1, 0.1, 0.8]])
    assert fid.class_coverage(probs, ("a", "b", "c")) == {"a": 0.5, "b": 0.0, "c": 0.5}
    assert fid.confident_fraction(probs) == 0.5


def test_a_judge_below_95_percent_is_declared_unreliable():
    from types import SimpleNamespace

    from realsys_cli.gan.judge import Judge

    def why(accuracy):
        return Judge.unreliable_because(SimpleNamespace(eval_accuracy=accuracy))

    assert why(0.9981) is None and why(0.95) is None
    assert "0.400, below 0.95" in why(0.4) and "--judge" in why(0.4)
    assert "unknown" in why(None)
