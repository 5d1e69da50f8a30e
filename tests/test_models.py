"""The classifiers: parameter counts against the paper and the PyTorch reference, shapes, LRN,
max-pooling, initialisation, dropout and the registry's errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realsys_cli.errors import ConfigError
from realsys_cli.models import CLASSIFIERS, build_classifier, min_image_size
from realsys_cli.models.layers import local_response_norm, max_pool


def n_params(model: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def abstract(name: str, **kwargs) -> nnx.Module:
    """The model with shapes only (no initialisation work): for counts and output shapes."""
    return nnx.eval_shape(lambda: build_classifier(name, rngs=nnx.Rngs(0), **kwargs))


def output_shape(model: nnx.Module, x_shape: tuple[int, ...], method: str = "__call__"):
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    out = jax.eval_shape(lambda s, x: getattr(nnx.merge(graphdef, s), method)(x), state, x)
    return out.shape, out.dtype


def conv_params(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def fc_params(fin: int, fout: int) -> int:
    return fin * fout + fout


# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [224, 227])
def test_alexnet_param_count_matches_paper_arithmetic(image_size):
    expected = (
        conv_params(11, 3, 96)
        + conv_params(5, 96, 256)
        + conv_params(3, 256, 384)
        + conv_params(3, 384, 384)
        + conv_params(3, 384, 256)
        + fc_params(6 * 6 * 256, 4096)
        + fc_params(4096, 4096)
        + fc_params(4096, 1000)
    )
    assert expected == 62_378_344
    model = abstract("alexnet", num_classes=1000, in_channels=3, image_size=image_size)
    assert model.fc6.kernel.shape == (9216, 4096)
    assert n_params(model) == expected


def test_alexnet_small_matches_the_bench_classifier():
    model = abstract("alexnet-small", num_classes=10, in_channels=3, image_size=64)
    assert n_params(model) == 7_706_442
    assert model.fc1.kernel.shape == (4096, 1024)


def test_lenet_matches_the_bench_classifier_small():
    model = abstract("lenet", num_classes=10, in_channels=1, image_size=28)
    assert n_params(model) == 857_738
    assert model.fc1.kernel.shape == (3136, 256)


# --- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [224, 227])
def test_alexnet_shapes(image_size):
    model = abstract("alexnet", num_classes=1000, in_channels=3, image_size=image_size)
    assert type(model).feature_map_size(image_size) == 6
    x_shape = (2, image_size, image_size, 3)
    assert output_shape(model, x_shape) == ((2, 1000), jnp.float32)
    assert output_shape(model, x_shape, "features") == ((2, 4096), jnp.float32)


@pytest.mark.parametrize(
    ("name", "channels", "size", "feature_dim"),
    [
        ("alexnet-small", 3, 32, 1024),
        ("alexnet-small", 3, 64, 1024),
        ("lenet", 1, 28, 256),
        ("lenet", 3, 32, 256),
    ],
)
def test_small_model_shapes(name, channels, size, feature_dim):
    model = abstract(name, num_classes=7, in_channels=channels, image_size=size)
    assert model.feature_dim == feature_dim
    x_shape = (2, size, size, channels)
    assert output_shape(model, x_shape) == ((2, 7), jnp.float32)
    assert output_shape(model, x_shape, "features") == ((2, feature_dim), jnp.float32)


def test_lenet_runs_in_float32_and_bfloat16():
    x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
    for dtype in [None, jnp.bfloat16]:
        model = build_classifier(
            "lenet", num_classes=10, in_channels=1, image_size=28, dtype=dtype, rngs=nnx.Rngs(0)
        )
        params = jax.tree.leaves(nnx.state(model, nnx.Param))
        assert {p.dtype for p in params} == {np.dtype(np.float32)}
        logits = model(x)
        assert logits.shape == (2, 10) and logits.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(logits)))
        np.testing.assert_allclose(  # features: what the last layer turns into the logits
            np.asarray(model.fc2(model.features(x))), np.asarray(logits), rtol=1e-5, atol=1e-6
        )


# --- local response normalisation ---------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.75, 0.5])  # 0.75 takes the rsqrt path, others pow
def test_lrn_against_hand_computation(beta):
    a = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)  # one pixel, 4 channels
    k, alpha = 2.0, 0.01
    # window of 5 centred on each channel, clipped to channels 0..3
    expected = [
        1.0 / (k + alpha * (1 + 4 + 9)) ** beta,  # c=0: channels 0,1,2
        2.0 / (k + alpha * (1 + 4 + 9 + 16)) ** beta,  # c=1: channels 0..3
        3.0 / (k + alpha * (1 + 4 + 9 + 16)) ** beta,  # c=2: channels 0..3 (4 is past the edge)
        4.0 / (k + alpha * (4 + 9 + 16)) ** beta,  # c=3: channels 1,2,3
    ]
    b = local_response_norm(a, size=5, k=k, alpha=alpha, beta=beta)
    np.testing.assert_allclose(np.asarray(b).ravel(), expected, rtol=1e-6)


def test_lrn_paper_defaults_and_dtype():
    a = jnp.full((1, 2, 2, 3), 10.0, jnp.bfloat16)
    b = local_response_norm(a)  # k=2, n=5, alpha=1e-4 (not divided by n), beta=0.75
    assert b.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(b, np.float32), 10.0 / (2.0 + 1e-4 * 300.0) ** 0.75, rtol=1e-2
    )


# --- max pooling -------------------------------------------------------------------------------


def reduce_window_max(x, window, stride):
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), "VALID"
    )


@pytest.mark.parametrize(("window", "stride"), [(2, 2), (3, 2)])
@pytest.mark.parametrize("hw", [(13, 13), (8, 11)])
def test_max_pool_equals_reduce_window(window, stride, hw):
    shape = (2, *hw, 3)
    # a permutation: every value distinct, so each window has a unique maximum
    x = jnp.asarray(np.random.default_rng(0).permutation(np.prod(shape)), jnp.float32)
    x = x.reshape(shape)
    weights = jax.random.normal(
        jax.random.key(1), (2, (hw[0] - window) // stride + 1, (hw[1] - window) // stride + 1, 3)
    )

    @jax.jit
    def values_and_grads(x):
        def pooled_and_grad(pool):
            return jax.value_and_grad(lambda x: jnp.sum(pool(x) * weights))(x), pool(x)

        return (
            pooled_and_grad(lambda x: max_pool(x, window, stride)),
            pooled_and_grad(lambda x: reduce_window_max(x, window, stride)),
        )

    ((_, grad_ours), ours), ((_, grad_ref), ref) = values_and_grads(x)
    assert ours.shape == ref.shape == weights.shape
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    np.testing.assert_allclose(np.asarray(grad_ours), np.asarray(grad_ref), rtol=1e-6)


# --- initialisation ----------------------------------------------------------------------------


@pytest.mark.slow
def test_alexnet_paper_init_is_its_default():
    # image size 63 gives a 1x1 final map: the full conv stack with a small fc6
    model = build_classifier(
        "alexnet", num_classes=10, in_channels=3, image_size=63, rngs=nnx.Rngs(0)
    )
    for name in ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]:
        layer = getattr(model, name)
        kernel = np.asarray(layer.kernel[...])
        assert abs(kernel.std() - 0.01) < 0.0005, name
        assert abs(kernel.mean()) < 0.001, name
        bias = 1.0 if name in {"conv2", "conv4", "conv5", "fc6", "fc7"} else 0.0
        np.testing.assert_array_equal(np.asarray(layer.bias[...]), bias, err_msg=name)


@pytest.mark.slow
def test_he_init_is_the_small_models_default():
    model = build_classifier(
        "alexnet-small", num_classes=10, in_channels=3, image_size=32, rngs=nnx.Rngs(0)
    )
    for name, fan_in in [("conv2", 5 * 5 * 64), ("conv3", 3 * 3 * 192), ("fc2", 1024)]:
        layer = getattr(model, name)
        std = float(np.asarray(layer.kernel[...]).std())
        assert abs(std - np.sqrt(2.0 / fan_in)) < 0.05 * np.sqrt(2.0 / fan_in), name
        assert not np.any(np.asarray(layer.bias[...]))


# --- dropout and features ----------------------------------------------------------------------


def test_dropout_only_in_training():
    model = build_classifier(
        "alexnet-small",
        num_classes=10,
        in_channels=3,
        image_size=32,
        rngs=nnx.Rngs(params=0, dropout=1),
    )
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    eval_a, eval_b = model(x), model(x, train=False)
    np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(eval_b))
    train_a, train_b = model(x, train=True), model(x, train=True)
    assert not np.allclose(np.asarray(train_a), np.asarray(train_b))
    assert not np.allclose(np.asarray(train_a), np.asarray(eval_a))
    # features are the penultimate activations: the last layer applied to them gives the logits
    np.testing.assert_allclose(
        np.asarray(model.fc3(model.features(x))), np.asarray(eval_a), rtol=1e-5, atol=1e-6
    )

    @nnx.jit
    def train_logits(model, x):
        return model(x, train=True)

    assert not np.allclose(np.asarray(train_logits(model, x)), np.asarray(train_logits(model, x)))


# --- registry ----------------------------------------------------------------------------------


def test_registry_names():
    assert set(CLASSIFIERS) == {"alexnet", "alexnet-small", "lenet"}


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="alexnet, alexnet-small, lenet"):
        build_classifier("vgg", num_classes=10, in_channels=3, image_size=32, rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="alexnet-small"):
        min_image_size("resnet")


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_min_image_size_is_the_smallest_that_works(name):
    minimum = min_image_size(name)
    cls = CLASSIFIERS[name]
    assert cls.feature_map_size(minimum) == 1  # the last feature map is 1x1, ...
    assert cls.feature_map_size(minimum - 1) == 0  # ... one pixel less leaves none
    with pytest.raises(ConfigError, match=f"at least {minimum}x{minimum}"):
        build_classifier(
            name, num_classes=10, in_channels=3, image_size=minimum - 1, rngs=nnx.Rngs(0)
        )
    model = abstract(name, num_classes=10, in_channels=3, image_size=minimum)
    assert output_shape(model, (1, minimum, minimum, 3)) == ((1, 10), jnp.float32)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="its options are dtype, init"):
        build_classifier(
            "lenet", num_classes=10, in_channels=1, image_size=28, rngs=nnx.Rngs(0), lrn=True
        )
    with pytest.raises(ConfigError, match="paper, he"):
        build_classifier(
            "lenet", num_classes=10, in_channels=1, image_size=28, rngs=nnx.Rngs(0), init="xavier"
        )


def test_defaults():
    assert abstract("alexnet", num_classes=10, in_channels=3, image_size=227).lrn is True
    assert abstract("alexnet-small", num_classes=10, in_channels=3, image_size=64).lrn is False
