"""The pieces of `realsys fool` that need no trained network: MAP-Elites replacement, CPPN
genomes, polynomial mutation, target names, the run finder, blur/jitter, source picking."""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realsys_cli.errors import CheckpointError, ConfigError
from realsys_cli.fool.ascent import gaussian_blur, jitter, objective_value
from realsys_cli.fool.cppn import N_INPUTS, CppnEncoding, coordinates
from realsys_cli.fool.evolve import (
    DirectEncoding,
    polynomial_mutation,
    sbx_crossover,
    update_archive,
)
from realsys_cli.fool.perturb import pick_sources
from realsys_cli.fool.result import NEVER, at_least, milestones, passes, record
from realsys_cli.fool.target import latest_classifier_run, quantise, resolve_targets

DIGITS = tuple(str(i) for i in range(10))


# ------------------------------------------------------------------------------ MAP-Elites
def test_map_elites_replaces_only_beaten_champions():
    archive = {"genomes": jnp.asarray([10.0, 20.0, 30.0]),  # one (scalar) genome per class
               "fitness": jnp.asarray([0.5, 0.2, 0.9]), "hit": jnp.asarray([True, False, True])}
    offspring = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    probs = jnp.asarray([[0.6, 0.3, 0.1],   # beats class 0 (0.6 > 0.5)
                         [0.1, 0.1, 0.8],   # below class 2's 0.9
                         [0.2, 0.7, 0.1],   # beats class 1 (0.7 > 0.2), best for it
                         [0.4, 0.5, 0.1]])  # beats class 1 too, but offspring 2 is better
    new = update_archive(archive, offspring, probs)
    np.testing.assert_allclose(new["genomes"], [1.0, 3.0, 30.0])
    np.testing.assert_allclose(new["fitness"], [0.6, 0.7, 0.9])
    assert new["genomes"].shape == (3,)  # exactly one champion per class
    np.testing.assert_array_equal(new["hit"], [True, True, True])


def test_map_elites_one_offspring_can_take_several_classes_and_ties_do_not_replace():
    archive = {"genomes": jnp.zeros((3, 2, 2, 1)), "fitness": jnp.asarray([0.3, 0.3, 0.3]),
               "hit": jnp.zeros(3, bool)}
    offspring = jnp.stack([jnp.full((2, 2, 1), 7.0), jnp.full((2, 2, 1), 9.0)])
    probs = jnp.asarray([[0.35, 0.35, 0.3],  # beats classes 0 and 1; ties class 2
                         [0.3, 0.3, 0.3]])
    new = update_archive(archive, offspring, probs)
    assert float(new["genomes"][0].mean()) == 7.0 and float(new["genomes"][1].mean()) == 7.0
    assert float(new["genomes"][2].mean()) == 0.0  # a tie is not a win
    np.testing.assert_array_equal(new["hit"], [True, False, False])  # argmax of a tie: the first
    assert float(new["fitness"][2]) == pytest.approx(0.3)


def test_thresholds_are_exact_in_float32():
    t = at_least(0.9999)
    assert float(np.float32(0.9999)) < 0.9999 <= float(t)  # float32(0.9999) is 0.99989998
    assert float(np.nextafter(t, np.float32(0))) < 0.9999
    assert at_least(0.5) == np.float32(0.5)
    p = np.asarray([np.float32(0.9999), t], np.float32)
    np.testing.assert_array_equal(passes(p, 0.9999), [False, True])
    np.testing.assert_array_equal(p >= t, [False, True])


def test_milestones_record_the_first_step_only():
    probs = jnp.asarray([[0.995, 0.005], [0.4, 0.6]])
    passed = milestones(probs, jnp.asarray([0, 0]))
    np.testing.assert_array_equal(passed, [[True, True, False, False], [False] * 4])
    reached = record(jnp.full((2, 4), NEVER, jnp.int32), passed, jnp.asarray(3))
    reached = record(reached, jnp.ones((2, 4), bool), jnp.asarray(7))
    np.testing.assert_array_equal(reached, [[3, 3, 7, 7], [7, 7, 7, 7]])


# ------------------------------------------------------------------------------- mutation
def test_polynomial_mutation_stays_in_range_and_respects_the_rate():
    x = jax.random.uniform(jax.random.key(0), (20_000,))
    same = polynomial_mutation(jax.random.key(1), x, 0.0, 15.0)
    np.testing.assert_array_equal(same, x)
    y = polynomial_mutation(jax.random.key(1), x, 0.1, 15.0)
    changed = np.asarray(y != x)
    assert 0.08 < changed.mean() < 0.12
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # eta 15: E|delta| = 1 / (eta + 2) ~ 0.059 before clipping
    unclipped = changed & (np.asarray(y) > 0) & (np.asarray(y) < 1)
    assert 0.04 < float(np.abs(np.asarray(y - x))[unclipped].mean()) < 0.07


def test_sbx_crossover_mixes_parents_gene_by_gene():
    a = jax.random.uniform(jax.random.key(0), (64, 8, 8, 1))
    b = jax.random.uniform(jax.random.key(1), (64, 8, 8, 1))
    np.testing.assert_array_equal(sbx_crossover(jax.random.key(2), a, b, 0.0, 10.0), a)
    np.testing.assert_allclose(sbx_crossover(jax.random.key(2), a, a, 1.0, 10.0), a, atol=1e-6)
    child = np.asarray(sbx_crossover(jax.random.key(2), a, b, 1.0, 10.0))
    assert child.min() >= 0.0 and child.max() <= 1.0
    crossed = child != np.asarray(a)
    assert 0.4 < crossed.mean() < 0.6  # about half of the genes come from the cross
    # a crossed gene lands near the segment between the parents (eta 10: beta close to 1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    span = hi - lo
    inside = (child >= lo - 0.5 * span) & (child <= hi + 0.5 * span)
    assert inside[crossed].mean() > 0.95


def test_direct_encoding_halves_its_rate_every_1000_generations():
    enc = DirectEncoding((8, 8, 1), mutation_rate=0.5, halve_every=1000, eta=15.0)
    g = enc.init(jax.random.key(0), 200)
    early = float(jnp.mean(enc.mutate(jax.random.key(1), g, jnp.asarray(5)) != g))
    late = float(jnp.mean(enc.mutate(jax.random.key(1), g, jnp.asarray(1005)) != g))
    assert early == pytest.approx(0.5, abs=0.03) and late == pytest.approx(0.25, abs=0.03)


# ------------------------------------------------------------------------------------ CPPN
@pytest.fixture(scope="module")
def grown() -> tuple[CppnEncoding, dict]:
    """16 genomes after 40 rounds of mutation (node and connection adds made likely)."""
    enc = CppnEncoding(image_size=12, channels=3, max_hidden=8, add_node_rate=0.5,
                       add_connection_rate=0.5)
    genomes = enc.init(jax.random.key(0), 16)
    mutate = jax.jit(enc.mutate)
    for i in range(40):
        genomes = mutate(jax.random.key(i + 1), genomes, jnp.asarray(i))
    return enc, jax.tree.map(np.asarray, genomes)


def test_cppn_starts_with_inputs_wired_to_outputs_and_no_hidden_nodes():
    enc = CppnEncoding(image_size=8, channels=1, max_hidden=5)
    g = enc.init(jax.random.key(0), 3)
    sizes = CppnEncoding.size_of(g)
    np.testing.assert_array_equal(sizes["nodes"], [0, 0, 0])
    np.testing.assert_array_equal(sizes["connections"], [N_INPUTS * 1] * 3)
    # With no hidden node a pixel is (tanh(w . (x, y, d, 1)) + 1) / 2, by hand:
    w = np.asarray(g["w"])[:, :N_INPUTS, 5]  # (3, 4): inputs -> the one output (after 5 hidden)
    axis = np.linspace(-1, 1, 8)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    inputs = np.stack([x, y, np.hypot(x, y), np.ones_like(x)], axis=-1)  # (8, 8, 4)
    expected = (np.tanh(inputs @ w.T) + 1) / 2  # (8, 8, 3 genomes)
    np.testing.assert_allclose(np.asarray(enc.render(g)), expected.transpose(2, 0, 1)[..., None],
                               rtol=1e-5, atol=1e-6)


def test_cppn_grows_and_stays_feed_forward(grown):
    enc, g = grown
    sizes = CppnEncoding.size_of(g)
    assert int(sizes["nodes"].max()) > 2 and int(sizes["connections"].min()) >= N_INPUTS * 3
    h = enc.max_hidden
    for i in range(len(g["w"])):
        depth = np.where(g["hidden"][i], g["pos"][i], np.nan)  # (H,)
        assert np.all((depth[~np.isnan(depth)] > 0) & (depth[~np.isnan(depth)] < 1))
        src = np.concatenate([np.zeros(N_INPUTS), depth])  # missing nodes: nan
        tgt = np.concatenate([depth, np.ones(enc.channels)])
        s, t = np.nonzero(g["on"][i])
        assert np.all(src[s] < tgt[t]), "an enabled connection goes backwards or to a missing node"
        assert np.all(g["fn"][i][g["hidden"][i]] < 4)
    assert h == 8 and g["w"].shape == (16, N_INPUTS + h, h + 3)  # capacity unchanged by growth


def test_cppn_renders_deterministically_at_any_resolution(grown):
    enc, g = grown
    render = jax.jit(enc.render, static_argnums=1)
    a = np.asarray(render(g, 12))
    np.testing.assert_array_equal(a, np.asarray(render(g, 12)))  # same genome, same image
    assert a.shape == (16, 12, 12, 3)
    assert len({image.tobytes() for image in a}) == 16  # 16 genomes, 16 different images
    big = np.asarray(render(g, 23))  # 2 * 12 - 1: every other pixel is a 12 px pixel
    assert big.shape == (16, 23, 23, 3)
    np.testing.assert_allclose(big[:, ::2, ::2], a, atol=1e-4)
    assert np.std(a) > 0.01  # not a flat image


def test_cppn_coordinates():
    c = np.asarray(coordinates(3)).reshape(3, 3, 4)
    np.testing.assert_allclose(c[0, 0], [-1, -1, np.sqrt(2), 1], atol=1e-6)
    np.testing.assert_allclose(c[1, 1], [0, 0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(c[0, 2], [1, -1, np.sqrt(2), 1], atol=1e-6)  # row 0: y = -1


# ------------------------------------------------------------------------ targets and runs
def test_resolve_targets_by_name_and_index():
    names = ("tench", "springer", "cassette", "parachute")
    assert resolve_targets(["parachute", "1"], names, all_classes=False) == [3, 1]
    assert resolve_targets([], names, all_classes=False) == [0, 1, 2, 3]
    assert resolve_targets(["3"], names, all_classes=True) == [0, 1, 2, 3]
    assert resolve_targets(["9", "9"], DIGITS, all_classes=False) == [9]


def test_unknown_target_class_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        resolve_targets(["giraffe"], ("cat", "dog"), all_classes=False)
    assert "giraffe" in str(e.value) and "0 cat, 1 dog" in str(e.value)
    with pytest.raises(ConfigError, match="valid classes"):
        resolve_targets(["10"], DIGITS, all_classes=False)


def _fake_run(path, *, checkpoint: bool = True, age_s: float = 0.0):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    if checkpoint:
        (path / "checkpoints" / "12").mkdir(parents=True)
    t = time.time() - age_s
    os.utime(path / "config.json", (t, t))
    return path


def test_latest_classifier_run(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(CheckpointError, match="realsys train-classifier"):
        latest_classifier_run(runs)
    old = _fake_run(runs / "train-classifier-a", age_s=100)
    _fake_run(runs / "train-classifier-b", checkpoint=False)  # newer but never checkpointed
    _fake_run(runs / "train-gan-c")  # not a classifier
    assert latest_classifier_run(runs) == old
    new = _fake_run(runs / "train-classifier-d", age_s=1)
    assert latest_classifier_run(runs) == new


# ----------------------------------------------------------------- pixels, blur, sources
def test_quantise_rounds_forward_and_passes_the_gradient():
    x = jnp.asarray([0.1001, 0.5, 0.99999])
    np.testing.assert_allclose(quantise(x) * 255, np.round(np.asarray(x) * 255), atol=1e-4)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(3 * quantise(v)))(x), [3, 3, 3])


def test_ascent_objectives_by_hand():
    z = jnp.asarray([[1.0, 5.0, 3.0], [1.0, 5.0, 3.0]])
    t = jnp.asarray([1, 0])
    np.testing.assert_allclose(objective_value(z, t, "logit"), [5.0, 1.0])
    np.testing.assert_allclose(objective_value(z, t, "margin"), [2.0, -4.0])
    # the margin's gradient pushes the target up and its strongest rival down, nothing else
    g = jax.grad(lambda v: objective_value(v, t, "margin").sum())(z)
    np.testing.assert_allclose(g, [[0, 1, -1], [1, -1, 0]])


def test_blur_keeps_constants_and_jitter_is_a_permutation():
    flat = jnp.full((2, 9, 9, 3), 0.25)
    np.testing.assert_allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)
    x = jax.random.uniform(jax.random.key(0), (4, 9, 9, 1))
    blurred = gaussian_blur(x, 1.0)
    assert blurred.shape == x.shape and float(blurred.std()) < float(x.std())
    rolled = jitter(x, jax.random.key(1), 2)
    np.testing.assert_allclose(np.sort(np.asarray(rolled).ravel()), np.sort(np.asarray(x).ravel()))


def test_pick_sources_are_other_classes_and_distinct():
    labels = np.repeat(np.arange(5), 4)  # 20 images
    targets = np.repeat(np.arange(5), 3)  # 15 attacks
    idx = pick_sources(labels, targets, seed=0)
    assert np.all(labels[idx] != targets)
    assert len(set(idx.tolist())) == len(idx)
