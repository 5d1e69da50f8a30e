"""`realsys fool-screen`: a GAN's discriminator against fooling images, and the joint attack.

The statistics by hand (AUROC with ties, the threshold that keeps 95% of real images, the
rejected share), D's eval mode (an image's score does not depend on its batch-mates), the
realness term of the ascent (it raises the judge's logit), the command end to end on a tiny
LeNet and a tiny GAN (width 4, 1 epoch on 256 digits), and its bad inputs in the pattern of
tests/test_bad_inputs.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_bad_inputs import _restore_logging, assert_one_line_error  # noqa: F401 (a fixture)
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.errors import ConfigError
from realsys_cli.fool import ascent as ascent_lib
from realsys_cli.fool import discriminator, screen, screen_stats
from realsys_cli.fool.config import FoolConfig
from realsys_cli.fool.target import load_frozen

TINY = "digits/train=256,test=64"
USAGE, BAD = 2, 1
# The smallest attacks that still exercise every path: 1 image per class and method.
QUICK = ["-n", "1", "--set", "ascent_steps=8", "--set", "pgd_steps=2", "--set",
         "real_images=40", "--set", "generated_images=24", "--set", "noise_draws=2"]
SUMMARY_FIELDS = ("classifier", "gan", "threshold", "real_kept_share", "generated_auroc",
                  "fooling_auroc", "fooling_rejected_share", "fooled_and_accepted_share",
                  "joint_images", "joint_fooled_both_share", "joint_sheet", "screened_sheet",
                  "groups", "joint_per_class", "config", "fool_config")
GROUP_FIELDS = ("group", "images", "fooled_share", "auroc", "rejected_share",
                "median_d_score", "median_confidence", "fooled_and_accepted_share")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """A LeNet (1 epoch on 256 digits) and a GAN judged by it (width 4, 1 epoch, constant
    instance noise so that D's noisy scoring runs), plus a GAN run with only its config."""
    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.classifier.train import train_and_evaluate as train_classifier
    from realsys_cli.config import write_config
    from realsys_cli.gan.config import GanConfig
    from realsys_cli.gan.train import train_and_evaluate as train_gan

    root = tmp_path_factory.mktemp("screen")
    tfds = str(root / "tfds")
    train_classifier(ClassifierConfig(dataset=TINY, batch_size=32, num_epochs=1,
                                      warmup_steps=2, tfds_data_dir=tfds), root / "cls")
    train_gan(GanConfig(dataset=TINY, tfds_data_dir=tfds, width=4, batch_size=32,
                        num_epochs=1, fid_samples=32, fid_every_epochs=0, grid_samples=4,
                        judge=str(root / "cls"), instance_noise=0.1, instance_noise_final=0.1),
              root / "gan")
    write_config(GanConfig(dataset=TINY), root / "gan_config_only")
    return {"cls": str(root / "cls"), "gan": str(root / "gan"),
            "gan_config_only": str(root / "gan_config_only"), "root": str(root)}


# ------------------------------------------------------------------------------ statistics
def _brute_auroc(pos, neg) -> float:
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    return float(np.mean(pairs))


def test_auroc_by_hand_with_ties_and_the_extremes():
    assert screen_stats.auroc([3, 4], [1, 2]) == 1.0  # every real above every fooling image
    assert screen_stats.auroc([1, 2], [3, 4]) == 0.0
    assert screen_stats.auroc([5, 5, 5], [5, 5]) == 0.5  # all tied: chance
    # pairs (pos, neg): (1,2) 0, (1,0) 1, (2,2) 1/2, (2,0) 1, (3,2) 1, (3,0) 1 -> 4.5 / 6
    assert screen_stats.auroc([1, 2, 3], [2, 0]) == 0.75
    rng = np.random.default_rng(0)
    for _ in range(5):  # many ties: small integers
        pos, neg = rng.integers(0, 5, 17), rng.integers(0, 5, 11)
        assert screen_stats.auroc(pos, neg) == pytest.approx(_brute_auroc(pos, neg), abs=1e-12)
    with pytest.raises(ValueError):
        screen_stats.auroc([], [1.0])


def test_threshold_keeps_95_percent_of_real_and_rejects_by_hand():
    real = np.arange(1, 21, dtype=float)[::-1]  # 20 scores, 20 .. 1
    t = screen_stats.threshold_keeping(real, 0.95)
    assert t == 2.0 and np.mean(real >= t) == 0.95  # 1 of 20 real images below: 5%
    assert screen_stats.rejected_share([0.0, 1.5, 2.0, 3.0], t) == 0.5  # 0 and 1.5 fall below 2
    thousand = np.arange(1000, dtype=float)
    assert screen_stats.threshold_keeping(thousand, 0.95) == 50.0  # exactly 950 kept
    assert screen_stats.threshold_keeping(np.ones(7), 0.95) == 1.0  # ties: all kept
    assert screen_stats.threshold_keeping(np.arange(10.0), 0.5) == 5.0


def test_configs_route_set_keys_and_refuse_nonsense():
    s, f = screen.resolve_configs(config_file=None, set_items=["keep_real=0.9",
                                                               "generations=7"],
                                  screen_options={}, fool_options={"count_per_class": 3})
    assert (s.keep_real, f.generations, f.count_per_class) == (0.9, 7, 3)
    for bad in (dict(keep_real=1.0), dict(methods=("nope",)), dict(real_images=0)):
        with pytest.raises(ValueError):
            screen.ScreenConfig(**bad)
    with pytest.raises(ValueError, match="realness_weight"):
        FoolConfig(realness_weight=-0.5)


# ------------------------------------------------------------------- the realness term
def test_realness_term_raises_the_judges_logit(runs):
    """One ascent step on a toy linear judge R(x) = sum(w * x): with realness_weight > 0 the
    step raises R more than without (weight 0, same judge, same start); capped below the
    images' R, the term changes nothing."""
    net = load_frozen(runs["cls"])
    w = jnp.asarray(np.random.default_rng(1).normal(size=net.image_shape), jnp.float32)

    def toy(weights, x, key):  # (B, S, S, C) -> (B,)
        return jnp.sum(x * weights, axis=(1, 2, 3))

    targets = np.arange(10)

    def one_step(weight: float, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
        cfg = FoolConfig(l2_decay=0.0, realness_weight=weight)
        step = ascent_lib.make_ascent_step(net, cfg, ascent_lib.Realness(w, toy, threshold))
        state = ascent_lib.init_state(net, targets, 0, cfg.ascent_steps)
        state = step((net.weights, w), state, jnp.asarray(0, jnp.int32))
        return np.asarray(state["x"]), np.asarray(toy(w, state["x"], None))

    x0 = ascent_lib.init_state(net, targets, 0, 300)["x"]
    before = np.asarray(toy(w, x0, None))
    (_, plain), (_, joint) = one_step(0.0, None), one_step(10.0, None)
    assert np.all(joint > plain) and np.all(joint > before)
    # the term is capped at the acceptance level: an image already above it gets no push
    # from the judge, and the step is exactly the one without it
    x_plain, _ = one_step(0.0, None)
    x_capped, _ = one_step(10.0, float(before.min()) - 1.0)
    np.testing.assert_array_equal(x_capped, x_plain)
    with pytest.raises(ConfigError, match="fool-screen"):  # `realsys fool` has no judge
        ascent_lib.make_ascent_step(net, FoolConfig(realness_weight=1.0))


def test_d_scores_in_eval_mode_and_its_jax_twin_agrees(runs):
    """Eval mode: an image's score does not depend on the batch it is scored in. Without
    noise, the joint attack's differentiable D gives the host scores."""
    gan = discriminator.load_gan(runs["gan"])
    d = discriminator.discriminator_of(gan, noise_draws=2)
    assert d.noise_std == pytest.approx(0.1) and d.image_size == 28
    images = discriminator.generated_samples(gan, 12, seed=0)  # (12, 28, 28, 1) uint8
    alone, together = d.score(images[:3]), d.score(images)
    np.testing.assert_allclose(alone, together[:3], rtol=1e-5, atol=1e-5)
    clean = dataclasses.replace(d, noise_std=0.0)
    twin = jax.jit(clean.realness_fn(28, 1))(clean.weights, images / 255.0, None)
    np.testing.assert_allclose(np.asarray(twin), clean.score(images), rtol=1e-4, atol=1e-4)


def test_a_gan_of_other_classes_or_too_small_is_refused(runs):
    gan = discriminator.load_gan(runs["gan"])
    d, net = discriminator.discriminator_of(gan), load_frozen(runs["cls"])
    discriminator.check_matches(d, net)  # the same digits: fine
    with pytest.raises(ConfigError, match="not on the classes"):
        discriminator.check_matches(dataclasses.replace(d, class_names=tuple("abcdefghij")), net)
    with pytest.raises(ConfigError, match="shrunk"):
        discriminator.check_matches(d, dataclasses.replace(net, image_size=64))


# ------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def screened(runs):
    """One CLI run making ascent and perturb images (the two fastest methods) --json."""
    out = Path(runs["root"]) / "screened"
    result = CliRunner().invoke(app, ["fool-screen", "--gan", runs["gan"], "-C", runs["cls"],
                                      "-w", str(out), *QUICK, "--set",
                                      "methods=ascent,perturb", "--json"])
    return out, result


@pytest.mark.slow  # a whole fool-screen run
def test_fool_screen_json_report_and_files(screened):
    out, result = screened
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON object, nothing else on stdout
    assert result.stdout.count("\n") == 1
    saved = json.loads((out / "report.json").read_text())
    assert saved == data
    for key in SUMMARY_FIELDS:
        assert key in data, key
    groups = {g["group"]: g for g in data["groups"]}
    assert {"real (test)", "generated (G)", "ascent", "perturb",
            "all fooling images"} <= groups.keys()
    assert any(label.startswith("joint") for label in groups)
    for g in data["groups"]:
        for key in GROUP_FIELDS:
            assert key in g, (g["group"], key)
    assert groups["ascent"]["images"] == groups["perturb"]["images"] == 10
    assert data["real_images"] == 40 and data["fooling_images"] == 20
    assert data["real_kept_share"] >= 0.95
    assert 0.0 <= data["fooling_auroc"] <= 1.0
    assert data["joint_images"] == 10 and len(data["joint_per_class"]) == 10
    # honest aggregates: the pooled row is the mean of its parts (equal sizes here)
    assert groups["all fooling images"]["rejected_share"] == pytest.approx(
        (groups["ascent"]["rejected_share"] + groups["perturb"]["rejected_share"]) / 2)
    assert data["joint_fooled_both"] == round(data["joint_fooled_both_share"] * 10)
    for name in ("screened_sheet.png", "joint_sheet.png", "joint/images.npz",
                 "made/ascent/images.npz", "made/perturb/images.npz"):
        assert (out / name).is_file(), name
    assert np.load(out / "joint" / "images.npz")["images"].shape == (10, 28, 28, 1)
    # the per-image numbers behind the rows: recompute the ascent row from scores.npz
    scores = np.load(out / "scores.npz")
    labels = list(scores["labels"])
    real, mine = scores[f"d_{labels.index('real (test)')}"], labels.index("ascent")
    assert screen_stats.auroc(real, scores[f"d_{mine}"]) == groups["ascent"]["auroc"]
    assert screen_stats.threshold_keeping(real, 0.95) == data["threshold"]


@pytest.mark.slow  # a whole fool-screen run
def test_fool_screen_reads_fool_runs_and_prints_tables(screened, runs):
    """--fooled: the images of existing fool runs (here the ones made above, one twice)."""
    out, _ = screened
    made = out / "made" / "ascent"
    result = CliRunner().invoke(app, ["fool-screen", "--gan", runs["gan"], "-C", runs["cls"],
                                      "-w", str(out.parent / "from_runs"), *QUICK,
                                      "--fooled", str(made), "--fooled", str(made),
                                      "--set", "joint=false"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "fool-screen" in result.stdout and "AUROC" in result.stdout
    saved = json.loads((out.parent / "from_runs" / "report.json").read_text())
    labels = [g["group"] for g in saved["groups"]]
    assert labels[2:4] == ["ascent (ascent)", "ascent (ascent)"]  # told apart by folder
    assert "joint_images" not in saved
    assert not (out.parent / "from_runs" / "made").exists()  # nothing made: images given


@pytest.mark.slow  # every method, as the command runs by default: ~1 min on 2 cores
def test_fool_screen_makes_every_method(runs, tmp_path):
    result = CliRunner().invoke(app, ["fool-screen", "--gan", runs["gan"], "-C", runs["cls"],
                                      "-w", str(tmp_path / "all"), *QUICK, "--set",
                                      "generations=3", "--set", "population=16", "--json"])
    assert result.exit_code == 0, result.output
    labels = {g["group"] for g in json.loads(result.stdout)["groups"]}
    assert {"ascent", "evolve/direct", "evolve/cppn", "perturb"} <= labels


# ------------------------------------------------------------------------- bad inputs
FS = "fool-screen"
CASES = [
    ("no-gan", [FS, "-C", "{cls}"], USAGE),
    ("gan-missing", [FS, "-C", "{cls}", "--gan", "no_such_run"], BAD),
    ("gan-is-a-classifier", [FS, "-C", "{cls}", "--gan", "{cls}"], BAD),
    ("gan-without-checkpoint", [FS, "-C", "{cls}", "--gan", "{gan_config_only}"], BAD),
    ("gan-empty-dir", [FS, "-C", "{cls}", "--gan", "empty"], BAD),
    ("classifier-is-a-gan", [FS, "-C", "{gan}", "--gan", "{gan}"], BAD),
    ("fooled-missing", [FS, "-C", "{cls}", "--gan", "{gan}", "--fooled", "no_such_run"], BAD),
    ("fooled-not-a-fool-run", [FS, "-C", "{cls}", "--gan", "{gan}", "--fooled", "{cls}"], BAD),
    ("fooled-empty-dir", [FS, "-C", "{cls}", "--gan", "{gan}", "--fooled", "empty"], BAD),
    ("fooled-garbled", [FS, "-C", "{cls}", "--gan", "{gan}", "--fooled", "garbled"], BAD),
    ("negative-realness-weight", [FS, "-C", "{cls}", "--gan", "{gan}",
                                  "--realness-weight", "-1"], USAGE),
    ("set-negative-realness-weight", [FS, "-C", "{cls}", "--gan", "{gan}", "--set",
                                      "realness_weight=-1"], BAD),
    ("set-keep-real-1", [FS, "-C", "{cls}", "--gan", "{gan}", "--set", "keep_real=1"], BAD),
    ("set-unknown-method", [FS, "-C", "{cls}", "--gan", "{gan}", "--set", "methods=nope"],
     BAD),
    ("set-unknown-key", [FS, "-C", "{cls}", "--gan", "{gan}", "--set", "no_such_key=1"], BAD),
    ("confidence-above-1", [FS, "-C", "{cls}", "--gan", "{gan}", "--confidence", "1.5"], BAD),
    ("seed-negative", [FS, "-C", "{cls}", "--gan", "{gan}", "--seed", "-1"], USAGE),
    ("count-zero", [FS, "-C", "{cls}", "--gan", "{gan}", "-n", "0"], USAGE),
    ("writes-into-classifier", [FS, "-C", "{cls}", "--gan", "{gan}", "-w", "{cls}"], BAD),
    ("writes-into-gan", [FS, "-C", "{cls}", "--gan", "{gan}", "-w", "{gan}"], BAD),
    ("workdir-under-a-file", [FS, "-C", "{cls}", "--gan", "{gan}", "-w", "notes.txt/w"], BAD),
    ("no-classifier-in-runs", [FS, "--gan", "{gan}"], BAD),
    # `realsys fool` has no discriminator: its realness weight must stay 0
    ("fool-realness-weight", ["fool", "-C", "{cls}", "--set", "realness_weight=1"], BAD),
]


def _materials(here: Path) -> None:
    (here / "notes.txt").write_text("a regular file, so nothing can be created under it\n")
    (here / "empty").mkdir()
    (here / "garbled").mkdir()  # a fool run's names, not its contents
    (here / "garbled" / "report.json").write_text('{"method": "ascent"}\n')
    (here / "garbled" / "images.npz").write_bytes(b"not an npz file")


@pytest.mark.slow  # 23 command lines, each loading a classifier and a GAN
@pytest.mark.parametrize(("args", "code"), [pytest.param(a, c, id=i) for i, a, c in CASES])
def test_a_bad_input_is_one_line(args, code, runs, tmp_path):
    _materials(tmp_path)
    args = [a.format(**runs) for a in args] + ["--json"]
    assert_one_line_error(args, code, [tmp_path, Path(runs["root"])])
