"""SimVP (`predict-frames --model simvp`): shapes, the parameter count by hand, causality, the
rollout past the horizon, exact resume, the sharded step, the one-cycle schedule, clear errors.

Tiny configs (hid_S 4, hid_T 8, one strided block, a 9-px attention kernel) on 64x64 clips of 8
frames, 3 in and 3 out, so that every compile stays short on 2 cores.
"""

from __future__ import annotations

import inspect
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from interrupt import interrupt_at_step
from test_frames_train import _clips, _steps, assert_sharded_step_equals_one_device
from trees import assert_trees_equal
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.errors import ConfigError
from realsys_cli.frames import setup
from realsys_cli.frames.config import FramesConfig
from realsys_cli.frames.evaluate import load_trained
from realsys_cli.frames.steps import FramesSteps
from realsys_cli.frames.train import train_and_evaluate
from realsys_cli.models import count_params
from realsys_cli.models.simvp import GroupNorm, SimVP
from realsys_cli.models.simvp_ops import depthwise_conv, pixel_shuffle
from realsys_cli.training import optim

TINY = "moving-digits/train=32,test=8,frames=8"
SMALL = dict(simvp_hid_s=4, simvp_hid_t=8, simvp_n_s=2, simvp_n_t=2, simvp_attention_kernel=9,
             simvp_mlp_ratio=2.0)


def _cfg(**overrides) -> FramesConfig:
    base = dict(model="simvp", dataset=TINY, input_frames=3, output_frames=3, batch_size=8,
                num_epochs=2, log_every_steps=2, warmup_steps=2, observed_loss_weight=0.0,
                **SMALL)
    return FramesConfig(**{**base, **overrides})


def _model(**kw) -> SimVP:
    options = dict(channels=1, input_frames=3, future_frames=3, hid_s=4, hid_t=8,
                   spatial_blocks=2, translator_blocks=2, attention_kernel=9, mlp_ratio=2.0,
                   rngs=nnx.Rngs(0))
    return SimVP(**{**options, **kw})




# ------------------------------------------------------------------------ layers and shapes
def _conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout  # kernel + bias


def _convsc(cin: int, cout: int, k: int = 3, up: bool = False) -> int:
    # conv (to 4x channels before the pixel shuffle when upsampling) + GroupNorm scale, bias
    return _conv(k, cin, 4 * cout if up else cout) + 2 * cout


def _depthwise(k: int, c: int) -> int:
    return k * k * c + c


def _gsta(d: int, mlp_ratio: float, d_k: int, dd_k: int) -> int:
    h = int(d * mlp_ratio)
    attention = (_conv(1, d, d) + _depthwise(d_k, d) + _depthwise(dd_k, d) + _conv(1, d, 2 * d)
                 + _conv(1, d, d))  # proj_1, 5x5 dw, dilated dw, 1x1 to f and g, proj_2
    mlp = _conv(1, d, h) + _depthwise(3, h) + _conv(1, h, d)
    return 2 * d + attention + 2 * d + mlp + 2 * d  # two GroupNorms, the two layer scales


def test_parameter_count_by_hand():
    """T = T' = 3 frames, hid_S 4, hid_T 8, N_S 2 (one strided block), N_T 3, kernel 3, the
    attention kernel 21 (a 5x5 depthwise + a 7x7 depthwise dilated 3), MLP ratio 2."""
    model = nnx.eval_shape(lambda: _model(translator_blocks=3, attention_kernel=21))
    encoder = _convsc(1, 4) + _convsc(4, 4)  # full resolution (the skip), then stride 2
    decoder = _convsc(4, 4, up=True) + _convsc(4, 4) + _conv(1, 4, 1)  # up, skip added, readout
    translator = (_gsta(12, 2.0, 5, 7) + _conv(1, 12, 8)  # on T*hid_S = 12, then 1x1 to hid_T
                  + _gsta(8, 2.0, 5, 7)
                  + _gsta(8, 2.0, 5, 7) + _conv(1, 8, 12))  # then 1x1 to T'*hid_S = 12
    assert count_params(model) == encoder + translator + decoder == 6_405
    # no weakly typed weight (the updated params would be strong: jit would compile twice)
    assert not any(leaf.weak_type for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
    gating = model.translator.blocks[0].attn.gating
    assert gating.conv0.kernel.shape == (5, 5, 1, 12) and gating.conv0.dilation == 1
    assert gating.conv_spatial.kernel.shape == (7, 7, 1, 12) and gating.conv_spatial.dilation == 3


def test_patched_model_parameter_count_shapes_and_pixel_order():
    """patch=2: a 16x16x1 frame is read as 8x8x4, so the encoder's first conv takes 4 channels
    and the readout gives 4, put back as 16x16x1; the rest is the unpatched model's."""
    model = nnx.eval_shape(lambda: _model(patch=2))
    encoder = _convsc(4, 4) + _convsc(4, 4)  # on the 8x8 cells (the skip), then stride 2
    decoder = _convsc(4, 4, up=True) + _convsc(4, 4) + _conv(1, 4, 4)  # readout: 2x2x1 cells
    translator = _gsta(12, 2.0, 5, 3) + _conv(1, 12, 8) + _gsta(8, 2.0, 5, 3) + _conv(1, 8, 12)
    assert count_params(model) == encoder + translator + decoder == 4_344
    x = jnp.zeros((2, 3, 16, 16, 1))
    for horizon in (3, 5):
        assert nnx.eval_shape(lambda h=horizon: _model(patch=2)(x, h)).shape == (2, horizon, 16,
                                                                                  16, 1)
    latent, skip = nnx.eval_shape(lambda: _model(patch=2).encoder(jnp.zeros((6, 8, 8, 4))))
    assert latent.shape == (6, 4, 4, 4) and skip.shape == (6, 8, 8, 4)
    # the readout's channel j of cell (i, k) is pixel (2i + j // 2, 2k + j % 2): a readout that
    # lights channel 3 only (bias) lights the bottom-right pixel of every 2x2 cell
    real = _model(patch=2)
    real.decoder.readout.kernel[...] = jnp.zeros_like(real.decoder.readout.kernel[...])
    real.decoder.readout.bias[...] = jnp.array([-9.0, -9.0, -9.0, 9.0])
    out = np.asarray(real(jax.random.uniform(jax.random.key(0), (1, 3, 16, 16, 1)), 3))
    assert (out[..., 1::2, 1::2, 0] == 9).all() and (out[..., 0::2, :, 0] == -9).all()
    assert (out[..., 1::2, 0::2, 0] == -9).all()
    with pytest.raises(ValueError, match="patch must be at least 1"):
        _model(patch=0)


@pytest.mark.parametrize(("blocks", "latent_px"), [(1, 8), (3, 4)])
def test_odd_block_counts_stride_every_second_block(blocks, latent_px):
    """N_S = 1 strides never (patch 2: the latent is the 8x8 cells), N_S = 3 once; the decoder
    upsamples as often as the encoder strides, so the frames come back at 16x16."""
    def model():
        return _model(patch=2, spatial_blocks=blocks)

    latent, skip = nnx.eval_shape(lambda: model().encoder(jnp.zeros((6, 8, 8, 4))))
    assert latent.shape == (6, latent_px, latent_px, 4) and skip.shape == (6, 8, 8, 4)
    x = jnp.zeros((2, 3, 16, 16, 1))
    assert nnx.eval_shape(lambda: model()(x, 3)).shape == (2, 3, 16, 16, 1)
    assert _cfg(simvp_patch=4, simvp_n_s=blocks).spatial_divisor == 4 * 2 ** (blocks // 2)


def test_patched_model_is_causal_and_per_clip():
    model = _model(patch=2)
    observed = jax.random.uniform(jax.random.key(2), (3, 3, 16, 16, 1))
    run = nnx.jit(lambda m, x: m(x, 3))
    base = np.asarray(run(model, observed))
    for t in (0, 2):
        assert np.abs(np.asarray(run(model, observed.at[:, t].add(0.5))) - base).max() > 1e-6
    alone = np.asarray(run(model, observed[1:2]))
    np.testing.assert_allclose(alone[0], base[1], rtol=1e-5, atol=1e-6)


def test_conv_translator_parameter_count_shapes_and_dilations():
    """translator="conv": 1x1 12 -> 8, 3 residual blocks (GroupNorm, 3x3, GroupNorm, 3x3 on
    8 channels, a layer scale), 1x1 8 -> 12; the encoder and decoder as gSTA's model's."""
    model = nnx.eval_shape(lambda: _model(translator_blocks=3, translator="conv"))
    encoder = _convsc(1, 4) + _convsc(4, 4)
    decoder = _convsc(4, 4, up=True) + _convsc(4, 4) + _conv(1, 4, 1)
    block = 2 * (8 + 8) + 2 * _conv(3, 8, 8) + 8  # two GroupNorms, two 3x3 convs, the scale
    translator = _conv(1, 12, 8) + 3 * block + _conv(1, 8, 12)
    assert count_params(model) == encoder + translator + decoder == 4_801
    assert [b.conv1.kernel_dilation for b in model.translator.blocks] == [1, 2, 1]
    x = jnp.zeros((2, 3, 16, 16, 1))
    assert nnx.eval_shape(lambda: _model(translator="conv")(x, 7)).shape == (2, 7, 16, 16, 1)
    with pytest.raises(ValueError, match="translator must be one of gsta, conv"):
        _model(translator="mlp")


@pytest.mark.slow
def test_conv_translator_is_causal_and_per_clip():
    model = _model(translator="conv")
    observed = jax.random.uniform(jax.random.key(2), (3, 3, 16, 16, 1))
    run = nnx.jit(lambda m, x: m(x, 3))
    base = np.asarray(run(model, observed))
    assert np.abs(np.asarray(run(model, observed.at[:, 0].add(0.5))) - base).max() > 1e-6
    alone = np.asarray(run(model, observed[1:2]))
    np.testing.assert_allclose(alone[0], base[1], rtol=1e-5, atol=1e-6)


def test_shapes_of_every_stage_and_of_any_horizon():
    """Shapes traced, not computed (nnx.eval_shape: nothing is drawn or compiled)."""
    def shapes(f, **kw):
        return nnx.eval_shape(lambda: f(_model(**kw)))

    x = jnp.zeros((2, 3, 16, 16, 1))  # (B, T, H, W, C); two strided blocks below: 16 px -> 4
    latent, skip = shapes(lambda m: m.encoder(x.reshape(6, 16, 16, 1)), spatial_blocks=4)
    assert latent.shape == (6, 4, 4, 4) and skip.shape == (6, 16, 16, 4)  # (B*T, ...)
    stacked = jnp.zeros((2, 4, 4, 12))  # (B, h, w, T*hid_S)
    assert shapes(lambda m: m.translator(stacked), spatial_blocks=4).shape == (2, 4, 4, 12)
    for horizon in (1, 3, 7):  # a part of one pass, one pass, three passes cut to 7
        logits = shapes(lambda m, h=horizon: m(x, h), spatial_blocks=4)
        assert logits.shape == (2, horizon, 16, 16, 1) and logits.dtype == jnp.float32
    # T' != T: the last observed frame's skip into every future frame
    assert shapes(lambda m: m(x, 2), future_frames=2, skip="last").shape == (2, 2, 16, 16, 1)
    with pytest.raises(ValueError, match="skip='each'"):
        _model(future_frames=2)


def test_pixel_shuffle_orders_channels_as_torch():
    x = jnp.arange(8.0).reshape(1, 1, 1, 8)  # channels c*4 + i*2 + j, c = 0, 1
    y = pixel_shuffle(x, 2)
    assert y.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[4, 5], [6, 7]])


# (5, 1) and (7, 3), SimVP's own, take the FFT weight gradient (k*k >= 25); (3, *) the direct.
# Frames smaller than the kernel's reach drop taps (simvp_ops._reachable): 7x7 dilated 3 on
# 8x8 (the default's latent) and on 7x9 keeps 5x5, on 8x13 5x7 (FFT); 5x5 dilated 3 on 4x16
# keeps 3x5 (direct); 3x3 dilated 3 on 2x3 keeps the centre alone.
@pytest.mark.parametrize(("k", "dilation", "shape"),
                         [(3, 1, (2, 7, 9, 5)), (5, 1, (2, 7, 9, 5)), (3, 3, (2, 7, 9, 5)),
                          (7, 3, (2, 7, 9, 5)), (7, 3, (3, 16, 16, 4)), (5, 1, (1, 4, 4, 3)),
                          (7, 3, (2, 8, 8, 6)), (7, 3, (2, 8, 13, 5)), (5, 3, (2, 4, 16, 3)),
                          (3, 3, (1, 2, 3, 2))])
def test_depthwise_conv_and_its_gradient_match_lax(k, dilation, shape):
    keys = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(keys[0], shape)
    w = jax.random.normal(keys[1], (k, k, shape[-1]))
    probe = jax.random.normal(keys[2], shape)

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w[:, :, None, :], (1, 1), "SAME", rhs_dilation=(dilation, dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=shape[-1])

    def mine(x, w):
        return depthwise_conv(x, w, dilation)

    np.testing.assert_allclose(mine(x, w), lax_conv(x, w), rtol=1e-5, atol=1e-5)
    grads = [jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) * probe), argnums=(0, 1))(x, w)
             for f in (mine, lax_conv)]
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("shape", "groups"), [((3, 6, 5, 8), 2), ((2, 4, 4, 6), 1)])
def test_group_norm_and_its_gradient_match_flax(shape, groups):
    keys = jax.random.split(jax.random.key(5), 4)
    x = jax.random.normal(keys[0], shape) * 3.0 + 1.5
    scale = 1.0 + 0.1 * jax.random.normal(keys[1], shape[-1:])
    bias = 0.1 * jax.random.normal(keys[2], shape[-1:])
    probe = jax.random.normal(keys[3], shape)
    ref = nnx.GroupNorm(shape[-1], num_groups=groups, epsilon=1e-5, rngs=nnx.Rngs(0))
    mine = GroupNorm(shape[-1], num_groups=groups, epsilon=1e-5)
    assert (jax.tree.structure(nnx.state(mine, nnx.Param))
            == jax.tree.structure(nnx.state(ref, nnx.Param)))  # the same checkpoint paths

    def run(module, x, scale, bias):  # the module with these parameters, as a pure function
        graphdef, state = nnx.split(module)
        params = {"bias": bias, "scale": scale}
        state = jax.tree.map_with_path(lambda path, v: params[path[0].key], state)
        return nnx.merge(graphdef, state)(x)

    np.testing.assert_allclose(run(mine, x, scale, bias), run(ref, x, scale, bias),
                               rtol=1e-4, atol=1e-4)
    grads = [jax.grad(lambda x, s, b, m=m: jnp.sum(run(m, x, s, b) * probe),
                      argnums=(0, 1, 2))(x, scale, bias) for m in (mine, ref)]
    assert float(jnp.abs(grads[1][1]).min()) > 1e-3  # the scale's gradient is a real one
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------- causality
def test_the_model_takes_no_future_frames():
    """SimVP's only input is the observed clip: no truth / teacher argument exists (the train
    step hands the truth to a model only with a scheduled-sampling mask, which the config
    refuses for SimVP; were it handed, this call would raise)."""
    assert list(inspect.signature(SimVP.__call__).parameters) == ["self", "observed", "horizon"]


def test_future_frames_never_move_the_predictions():
    """Through the jitted eval step (the code that scores the model): a batch whose future
    frames are replaced leaves the predictions' own statistics bit for bit (their sharpness
    depends on the predictions alone) while the scores against the truth change."""
    steps, state = _steps(_cfg())
    eval_step = steps.make_eval_step()
    clips = _clips()
    moved = clips.copy()
    moved[:, 3:] = 255 - moved[:, 3:]  # every frame after the 3 observed ones
    mask = np.ones(len(clips), bool)
    a = eval_step(state["params"], state["rest"], {"video": clips, "mask": mask})
    b = eval_step(state["params"], state["rest"], {"video": moved, "mask": mask})
    np.testing.assert_array_equal(a["model/sharpness"], b["model/sharpness"])
    assert np.abs(np.asarray(a["model/mse"]) - np.asarray(b["model/mse"])).min() > 1.0


def test_every_observed_frame_and_no_other_clip_matters():
    model = _model()
    observed = jax.random.uniform(jax.random.key(2), (3, 3, 16, 16, 1))
    run = nnx.jit(lambda m, x: m(x, 3))
    base = np.asarray(run(model, observed))
    for t in (0, 2):  # the first and the last observed frame
        moved = observed.at[:, t].add(0.5)
        assert np.abs(np.asarray(run(model, moved)) - base).max() > 1e-6, t
    # GroupNorm per clip (no BatchNorm): a clip's prediction ignores its batch mates
    alone = np.asarray(run(model, observed[1:2]))
    np.testing.assert_allclose(alone[0], base[1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_rollout_feeds_its_own_predictions_back_and_has_the_length_asked():
    """Past T' = 3 frames the last 3 frames so far (here the 3 predictions, as frames) are the
    next observed clip; the rollout's first pass is the plain prediction."""
    model = _model()
    observed = jax.random.uniform(jax.random.key(4), (2, 3, 16, 16, 1))
    run = nnx.jit(lambda m, x, h: m(x, h), static_argnums=2)
    long = np.asarray(run(model, observed, 8))  # 3 passes, cut to 8
    assert long.shape == (2, 8, 16, 16, 1)
    first = run(model, observed, 3)
    np.testing.assert_allclose(long[:, :3], first, rtol=1e-5, atol=1e-5)
    second = run(model, jax.nn.sigmoid(first), 3)
    np.testing.assert_allclose(long[:, 3:6], second, rtol=1e-4, atol=1e-4)
    third = run(model, jax.nn.sigmoid(second), 3)
    np.testing.assert_allclose(long[:, 6:8], third[:, :2], rtol=1e-4, atol=1e-4)
    # T' < T: the window slides by T' (observed frame 3 and the 2 predictions)
    short = _model(future_frames=2, skip="last")
    x = jax.random.uniform(jax.random.key(5), (1, 3, 16, 16, 1))
    two = run(short, x, 2)
    window = jnp.concatenate([x[:, 2:], jax.nn.sigmoid(two)], axis=1)
    np.testing.assert_allclose(run(short, x, 4)[:, 2:], run(short, window, 2), rtol=1e-4,
                               atol=1e-4)


# ---------------------------------------------------------------------- config and errors
@pytest.mark.parametrize(("overrides", "says"), [
    (dict(simvp_hid_s=3), "simvp_hid_s must be even"),
    (dict(simvp_n_s=0), "simvp_n_s must be at least 1"),
    (dict(simvp_n_t=1), "simvp_n_t must be at least 2"),
    (dict(simvp_kernel=4), "simvp_kernel must be odd"),
    (dict(simvp_mlp_ratio=0.0), "simvp_mlp_ratio must be positive"),
    (dict(simvp_patch=0), "simvp_patch must be at least 1"),
    (dict(output_frames=2), "needs output_frames = input_frames"),
    (dict(scheduled_sampling_steps=5), "SimVP predicts all future frames at once"),
    (dict(schedule="plateau"), "schedule must be one of"),
])
def test_bad_simvp_configs_are_refused(overrides, says):
    with pytest.raises(ValueError, match=says):
        _cfg(**overrides)


def test_convlstm_configs_are_untouched_by_simvp_fields():
    FramesConfig(simvp_hid_s=3, output_frames=2, scheduled_sampling_steps=5)  # no error
    assert FramesConfig().spatial_divisor == 4 and _cfg().spatial_divisor == 2
    assert _cfg(simvp_patch=2).spatial_divisor == 4
    assert _cfg(simvp_patch=4, simvp_n_s=4).spatial_divisor == 16


def test_frames_that_do_not_halve_are_clear():
    from realsys_cli.data.dataset import open_dataset

    data = open_dataset(TINY)
    with pytest.raises(ConfigError, match="halved 7 times"):
        setup.check_frames(_cfg(simvp_n_s=14), data)
    with pytest.raises(ConfigError, match="patches of 128 px halved 1 times"):
        setup.check_frames(_cfg(simvp_patch=128), data)


runner = CliRunner()


@pytest.mark.parametrize(("args", "says"), [
    (["--model", "simvp", "--set", "simvp_hid_s=3"], "simvp_hid_s must be even"),
    (["-m", "simvp", "--set", "scheduled_sampling_steps=4"], "leave it at 0"),
])
def test_bad_simvp_values_on_the_command_line_are_one_line(args, says):
    result = runner.invoke(app, ["predict-frames", *args, "--json"])
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and says in line, line


def test_model_option_and_recipe():
    from pathlib import Path

    from realsys_cli.config import resolve_config

    result = runner.invoke(app, ["predict-frames", "--model", "simvp", "--print-config",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "simvp"
    assert runner.invoke(app, ["predict-frames", "--model", "gru"]).exit_code == 2
    configs = Path(__file__).parents[1] / "configs"
    openstl = resolve_config(FramesConfig, config_file=configs / "simvp_openstl.toml")
    assert openstl.model == "simvp" and openstl.schedule == "onecycle"
    default = resolve_config(FramesConfig, config_file=configs / "simvp_moving_digits.toml")
    assert default.model == "simvp" and default.schedule == "cosine"
    # the sizes README and docs/frames.md quote: OpenSTL's recipe keeps FramesConfig's unpatched
    # SimVP; the default folds each frame 4x4
    for made, size in ((openstl, 542_529), (FramesConfig(model="simvp"), 542_529),
                       (default, 817_504)):
        assert count_params(nnx.eval_shape(lambda c=made: setup.make_model(c, 1))) == size


def test_onecycle_schedule_by_hand():
    """torch's OneCycleLR as OpenSTL uses it, total 10 steps, max lr 1e-3: cosine from
    1e-3 / 25 up to 1e-3 at step int(0.3 * 10) = 3, then cosine down to 1e-3 / 25 / 1e4."""
    spec = optim.OptimizerSpec(name="sgd", momentum=0.0, weight_decay=0.0, learning_rate=1e-3,
                               schedule="onecycle", warmup_steps=5, total_steps=10)
    schedule = optim.learning_rate_schedule(spec)
    low, peak, end = 1e-3 / 25, 1e-3, 1e-3 / 25 / 1e4

    def cosine(a: float, b: float, frac: float) -> float:
        return a + (b - a) * (1 - math.cos(math.pi * frac)) / 2

    expected = [cosine(low, peak, s / 3) for s in range(3)]
    expected += [cosine(peak, end, (s - 3) / 7) for s in range(3, 11)]
    assert [float(schedule(s)) for s in range(11)] == pytest.approx(expected, rel=1e-5)
    assert expected[0] == pytest.approx(4e-5) and expected[1] == pytest.approx(2.8e-4)
    # the optimizer follows it: plain SGD moves w = 1 by lr(0) * grad at the first step
    tx = optim.build_optimizer(spec)
    params = {"w": jnp.ones(())}
    updates, _ = tx.update({"w": jnp.ones(())}, tx.init(params), params)
    assert float(updates["w"]) == pytest.approx(-4e-5, rel=1e-5)


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def resumed_runs(tmp_path_factory):
    """A tiny SimVP run on 20-frame clips, 10 in and 10 out (the Moving MNIST protocol), with the
    one-cycle schedule, scored on a stand-in of the real Moving MNIST test file (`--set
    eval_dataset=moving_mnist`, downloaded from a local mirror): straight (8 steps), and the same
    run interrupted by Ctrl-C at step 3 and resumed. The TFDS dir is the config's own, so the
    movie later finds the prepared file without the mirror."""
    from mirror import MirrorServer, write_moving_mnist, write_sums

    from realsys_cli.data import download

    root = tmp_path_factory.mktemp("simvp")
    (root / "mirror").mkdir()
    seq = write_moving_mnist(root / "mirror", clips=4)  # uint8 (20, 4, 64, 64), time first
    write_sums(root / "mirror")
    cfg = _cfg(schedule="onecycle", dataset="moving-digits/train=32,test=8", input_frames=10,
               output_frames=10, eval_dataset="moving_mnist", tfds_data_dir=str(root / "tfds"))
    with pytest.MonkeyPatch.context() as mp, MirrorServer(root / "mirror") as server:
        mp.setenv(download.MIRROR_ENV, server.url)
        mp.setattr(download._State, "forbidden", False)
        mp.setattr(download._State, "sums", {})
        straight = train_and_evaluate(cfg, root / "straight")
        with interrupt_at_step(FramesSteps, 3):
            train_and_evaluate(cfg, root / "resumed")
        resumed = train_and_evaluate(cfg, root / "resumed")
    return root, cfg, seq, straight, resumed


@pytest.mark.slow  # trains and resumes SimVP runs (compiles for ~20 s each)
def test_interrupted_and_resumed_run_equals_uninterrupted(resumed_runs):
    root, cfg, _, straight, resumed = resumed_runs
    assert straight["model"] == "simvp" and straight["steps"] == 8
    assert straight["num_params"] == count_params(nnx.eval_shape(lambda: setup.make_model(cfg, 1)))
    assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 8
    a = load_trained(root / "straight", best=False).state
    b = load_trained(root / "resumed", best=False).state
    assert_trees_equal(a, b)  # weights, Adam moments and count (the schedule's step), key
    assert resumed["mse_per_frame"] == straight["mse_per_frame"]
    _, fresh = _steps(cfg)
    trained, initial = jax.tree.leaves(a["params"]), jax.tree.leaves(fresh["params"])
    assert all(not np.array_equal(x, y) for x, y in zip(trained, initial, strict=True))


@pytest.mark.slow  # trains and resumes SimVP runs (compiles for ~20 s each)
def test_scored_on_the_real_moving_mnist_file(resumed_runs):
    """The same scoring code on the file's 20-frame clips, 10 in and 10 out."""
    _, _, seq, straight, _ = resumed_runs
    assert straight["eval_dataset"] == "moving_mnist" and straight["eval_split"] == "test"
    assert straight["eval_sequences"] == 4
    assert len(straight["mse_per_frame"]) == 10 and np.isfinite(straight["mse_per_frame"]).all()
    frames = seq.astype(np.float64) / 255.0  # frame 10 repeated as frames 11..20
    copy_last = [((frames[10 + t] - frames[9]) ** 2).sum(axis=(1, 2)).mean() for t in range(10)]
    assert straight["baseline_copy_last_mse_per_frame"] == pytest.approx(copy_last, abs=1e-3)


@pytest.mark.slow  # trains and resumes SimVP runs (compiles for ~20 s each)
def test_trained_run_makes_a_movie_of_the_length_asked(resumed_runs, tmp_path):
    from realsys_cli.frames.rollout import rollout
    from realsys_cli.runs import describe_run

    root = resumed_runs[0]
    trained = load_trained(root / "straight")
    frames = rollout(trained, _clips(2, frames=10), 25)  # 3 passes of 10, cut to 25
    assert frames.shape == (2, 25, 64, 64, 1) and frames.dtype == np.float32
    assert np.all((frames >= 0) & (frames <= 1))
    out = tmp_path / "movie.gif"
    result = runner.invoke(app, ["predict-frames", "--workdir", str(root / "straight"),
                                 "--rollout", "25", "--out", str(out), "--count", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # the run's evaluation clips (the Moving MNIST stand-in): 10 read + 25 predicted, the
    # 20-frame clips hold the truth for 10 of them
    assert data["rollout"] == 25 and data["gif_frames"] == 10 + 25 and data["truth_frames"] == 10
    assert len(data["mse_per_frame"]) == 10
    assert describe_run(root / "straight")["model"] == "simvp"


# slow (about 26 s, SimVP compiles twice): the ConvLSTM's twin stays in the default suite
@pytest.mark.slow
def test_step_sharded_over_4_devices_equals_one_device():
    """SimVP's step, data parallel over 4 devices (batch of 8 clips, state replicated), equals
    the one-device step within float tolerance (GroupNorm per clip, losses averaged over the
    global batch). The discriminator's part is the ConvLSTM's test's (test_frames_train)."""

    assert jax.device_count() == 4
    cfg = _cfg(schedule="onecycle")
    clips = _clips()
    assert_sharded_step_equals_one_device(cfg, clips)
