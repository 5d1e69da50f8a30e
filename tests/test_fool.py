"""`realsys fool` and `fool-defence` against a tiny LeNet trained here on 256 digits.

The attacks' own guarantees are checked with numbers: an ascent step raises the target logit,
pixels stay in [0, 1] and on the uint8 grid, every recorded confidence is the saved image's
own, PGD stays inside its epsilon ball, MAP-Elites champions never get worse; and the CLI keeps
its promises (JSON schema, files, errors in one line, exit 130 on Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.fool import ascent as ascent_lib
from realsys_cli.fool.config import THRESHOLDS, FoolConfig
from realsys_cli.fool.evolve import DirectEncoding, make_generation
from realsys_cli.fool.result import NEVER
from realsys_cli.fool.run import run
from realsys_cli.fool.target import load_frozen

TINY = "digits/train=256,test=64"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet trained for 2 epochs on 256 digits (its own TFDS dir, kept in its config)."""
    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.classifier.train import train_and_evaluate

    root = tmp_path_factory.mktemp("fool")
    cfg = ClassifierConfig(dataset=TINY, batch_size=32, num_epochs=2, warmup_steps=2,
                           tfds_data_dir=str(root / "tfds"))
    result = train_and_evaluate(cfg, root / "classifier")
    assert result["eval_accuracy"] > 0.3
    return root / "classifier"


@pytest.fixture(scope="module")
def net(trained):
    return load_frozen(trained)


def _cli(*args: str):
    return runner.invoke(app, list(args))


def _check_success(result: dict, threshold: float) -> None:
    """success = confidence >= threshold (JSON confidences are rounded to 6 decimals)."""
    flags = [r["success"] for r in result["images"]]
    assert result["success_rate"] == pytest.approx(np.mean(flags))
    for r in result["images"]:
        if abs(r["confidence"] - threshold) > 1e-6:
            assert r["success"] == (r["confidence"] >= threshold)


# ---------------------------------------------------------------------------------- ascent
@pytest.mark.parametrize("objective", ["logit", "margin"])
def test_one_ascent_step_raises_the_objective_and_keeps_pixels_in_range(net, objective):
    cfg = FoolConfig(l2_decay=0.0, ascent_step_size=0.01, ascent_objective=objective)
    step = ascent_lib.make_ascent_step(net, cfg)
    targets = np.arange(10)
    state = ascent_lib.init_state(net, targets, 0, cfg.ascent_steps)
    x0 = np.asarray(state["x"])
    logits = jax.jit(net.logits)

    def target_logits(x):  # the objective: z_t, or z_t - max_{j != t} z_j
        z = np.asarray(logits(net.weights, jnp.round(jnp.asarray(x) * 255) / 255))
        rivals = np.where(np.eye(10, dtype=bool)[targets], -np.inf, z).max(1)
        return z[np.arange(10), targets] - (rivals if objective == "margin" else 0.0)

    before = target_logits(x0)
    state = step(net.weights, state, jnp.asarray(0, jnp.int32))
    x1 = np.asarray(state["x"])
    assert not np.array_equal(x0, x1)
    assert x1.min() >= 0.0 and x1.max() <= 1.0
    assert np.all(target_logits(x1) > before)
    # the update is the RMS-normalised gradient times the step size (before clipping)
    moved = np.abs(x1 - x0)[(x1 > 0) & (x1 < 1)]
    assert moved.max() <= 0.01 * np.sqrt(x0[0].size) + 1e-6


def test_ascent_fools_every_class_and_records_honest_numbers(net):
    cfg = FoolConfig(ascent_steps=60, confidence=0.99, ascent_step_size=0.05, l2_decay=0.0)
    fooled = ascent_lib.ascend(net, np.arange(10), cfg)
    assert fooled.images.dtype == np.uint8 and fooled.images.shape == (10, 28, 28, 1)
    # the confidences are those of the saved uint8 images, scored again from scratch
    probs = net.predict(fooled.images)
    np.testing.assert_allclose(fooled.confidences, probs[np.arange(10), fooled.targets],
                               rtol=1e-5)
    assert np.mean(fooled.confidences >= 0.99) >= 0.8  # a tiny LeNet is easy to fool
    assert np.all(fooled.steps <= 60)
    r = fooled.reached
    assert np.all(r[:, 0] != NEVER)
    # milestones come in order: argmax <= 0.99 (<= 0.999 <= 0.9999 where reached)
    for a, b in ((0, 1), (1, 2), (2, 3)):
        both = (r[:, a] != NEVER) & (r[:, b] != NEVER)
        assert np.all(r[both, a] <= r[both, b])
        assert not np.any((r[:, a] == NEVER) & (r[:, b] != NEVER))
    # an image stops at the step it reached the confidence (0.99 here), or runs all 60
    np.testing.assert_array_equal(fooled.steps, np.where(r[:, 1] == NEVER, 60, r[:, 1]))
    assert np.all((fooled.confidences >= 0.99) == (r[:, 1] != NEVER))


# ---------------------------------------------------------------------------------- evolve
def test_map_elites_champions_only_get_better(net):
    cfg = FoolConfig(method="evolve", population=32)
    enc = DirectEncoding(net.image_shape, crossover_rate=0.5)  # exercises SBX between champions
    init, generation = make_generation(net, enc, cfg)
    archive = init(net.weights, jax.random.key(0))
    history = [np.asarray(archive["fitness"])]
    for g in range(1, 8):
        archive = generation(net.weights, archive, jnp.asarray(g, jnp.int32))
        history.append(np.asarray(archive["fitness"]))
    history = np.stack(history)  # (generations, K)
    assert history.shape == (8, 10)
    assert np.all(np.diff(history, axis=0) >= 0)  # never replaced by a worse image
    assert np.any(np.diff(history, axis=0) > 0)
    assert archive["genomes"].shape == (10, 28, 28, 1)  # one champion per class
    # the fitness is the softmax score of the champion's saved (uint8) image
    images = np.round(np.asarray(archive["genomes"]) * 255).astype(np.uint8)
    np.testing.assert_allclose(net.predict(images)[np.arange(10), np.arange(10)],
                               history[-1], rtol=1e-5)


@pytest.mark.slow
def test_evolve_cppn_runs_and_reports_generations(net, tmp_path):
    cfg = FoolConfig(method="evolve", encoding="cppn", generations=6, population=24,
                     target_classes=("3", "7"), cppn_max_hidden_nodes=3)
    result = run(cfg, net.workdir, tmp_path / "out")
    assert result["unit"] == "generations" and result["encoding"] == "cppn"
    assert [r["target_class"] for r in result["images"]] == [3, 7]
    for r in result["images"]:
        assert 0 <= r["steps"] <= 6 and 0.0 <= r["confidence"] <= 1.0
    _check_success(result, 0.9999)


# --------------------------------------------------------------------------------- perturb
def test_perturb_stays_in_the_epsilon_ball_and_mostly_succeeds(net, tmp_path):
    cfg = FoolConfig(method="perturb", epsilon=0.3, pgd_steps=10, count_per_class=2)
    result = run(cfg, net.workdir, tmp_path / "out")
    saved = np.load(tmp_path / "out" / "images.npz")
    images, originals = saved["images"].astype(int), saved["originals"].astype(int)
    assert np.abs(images - originals).max() <= int(0.3 * 255)  # 76 grey levels
    assert np.all(saved["sources"] != saved["targets"])
    assert result["success_criterion"] == "the target is the argmax"
    assert result["success_rate"] >= 0.9
    fgsm = run(dataclasses.replace(cfg, pgd_steps=1, epsilon=0.1), net.workdir, tmp_path / "f")
    stepped = np.load(tmp_path / "f" / "images.npz")["images"].astype(int)
    moved = np.abs(stepped - originals)
    # one sign step of exactly 25 grey levels (0.1 * 255, rounded down), unless clipped at 0/255
    at_bound = (stepped == 0) | (stepped == 255)
    assert moved.max() <= 25 and np.all((moved == 25) | (moved == 0) | at_bound)
    assert np.mean(moved == 25) > 0.1
    assert all(r["steps"] == 1 for r in fgsm["images"])


# ------------------------------------------------------------------------------------- CLI
def test_fool_json_schema_and_files(trained, tmp_path):
    out = tmp_path / "out"
    result = _cli("fool", "-C", str(trained), "--all-classes", "--attack-steps", "40", "--json",
                  "-w", str(out), "--also-check", str(trained),
                  "--set", "ascent_step_size=0.05")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("method", "checkpoint", "success_rate", "images"):
        assert key in data
    assert data["method"] == "ascent" and data["checkpoint"] == str(trained)
    assert len(data["images"]) == 10
    for i, image in enumerate(data["images"]):
        assert {"target_class", "label", "confidence", "steps", "path", "reached"} <= set(image)
        assert image["target_class"] == i and set(image["reached"]) == set(THRESHOLDS)
        assert all(v is None or 0 <= v <= 40 for v in image["reached"].values())
        with Image.open(image["path"]) as png:
            assert png.size == (112, 112)  # 28 px upscaled x4 with nearest-neighbour
        # the transfer check against the same network gives the same confidence
        assert image["also_check"]["confidence"] == pytest.approx(image["confidence"], abs=1e-5)
    _check_success(data, 0.9999)
    assert (out / "sheet.png").exists()
    assert json.loads((out / "report.json").read_text())["images"] == data["images"]


def test_fool_table_and_default_classifier(trained, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "train-classifier-tiny").symlink_to(trained, target_is_directory=True)
    result = _cli("fool", "-t", "3", "--attack-steps", "5", "-w", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    stderr = "".join(result.stderr.split())  # Rich may wrap long paths
    assert "runs/train-classifier-tiny(themostrecentrun)" in stderr, result.stderr
    assert "success_rate" in result.stdout and "per class" in result.stdout


def test_unknown_target_class_is_one_line_listing_the_valid_ones(trained):
    result = _cli("fool", "-C", str(trained), "--target-class", "giraffe")
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "giraffe" in lines[0] and "0 0, 1 1" in lines[0]


def test_no_classifier_is_a_clear_error(tmp_path):
    result = _cli("fool")
    assert result.exit_code == 1 and result.stdout == ""
    assert "realsys train-classifier" in result.stderr and "Traceback" not in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _cli("fool", "-C", str(empty))
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "no classifier run" in line


def test_ctrl_c_saves_what_was_made_and_exits_130(trained, tmp_path, monkeypatch):
    real = ascent_lib.make_ascent_step

    def interrupted_step(net, cfg):
        step = real(net, cfg)

        def wrapped(weights, state, t):
            if int(t) == 3:
                raise KeyboardInterrupt
            return step(weights, state, t)

        return wrapped

    monkeypatch.setattr(ascent_lib, "make_ascent_step", interrupted_step)
    out = tmp_path / "o"
    result = _cli("fool", "-C", str(trained), "-t", "1", "-w", str(out), "--json")
    assert result.exit_code == 130
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and len(report["images"]) == 1


def test_last_releases_spellings_still_work(trained, tmp_path):
    """`-w CLASSIFIER --out DIR` and `-w CLASSIFIER` alone: fool's options until this release."""
    old = _cli("fool", "-w", str(trained), "-t", "2", "--attack-steps", "2", "--out",
               str(tmp_path / "o"), "--json")
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout)["checkpoint"] == str(trained)
    assert (tmp_path / "o" / "report.json").is_file()
    warnings = [line for line in old.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert f"reading {trained} as --classifier/-C" in warnings[0]
    assert "--out/-o is deprecated" in warnings[1] and "use --workdir/-w" in warnings[1]
    alone = _cli("fool", "-w", str(trained), "-t", "2", "--attack-steps", "2", "--json")
    assert alone.exit_code == 0, alone.output
    written = sorted((tmp_path / "runs").glob("fool-ascent-*"))  # the default workdir
    assert len(written) == 1 and json.loads(alone.stdout)["out"] == str(written[0])
    assert not (trained / "report.json").exists()  # the classifier run is only read


def test_fool_never_writes_into_a_classifier_run(trained):
    result = _cli("fool", "-C", str(trained), "-w", str(trained), "-t", "1")
    assert result.exit_code == 1 and result.stdout == ""
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "holds a train-classifier run" in line
    assert not (trained / "report.json").exists()


# --------------------------------------------------------------------------------- defence
@pytest.mark.slow  # a fooling round and a retraining
def test_defence_adds_a_fooling_class_and_reports_every_round(trained, tmp_path):
    out = tmp_path / "defence"
    args = ["fool-defence", "-C", str(trained), "--rounds", "1", "--count", "3", "--json",
            "-w", str(out), "--set", "ascent_steps=20", "--set", "ascent_step_size=0.05",
            "--set", "fooling_fraction=0.5"]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["rounds"]) == 2 and len(data["median_confidence_per_round"]) == 2
    first, second = data["rounds"]
    assert first["classes"] == 10 and second["classes"] == 11
    assert first["fooling_train_images"] == 0 and second["fooling_train_images"] == 30
    assert second["median_fooling_probability"] is not None
    assert first["previous_images_called_fooling"] is None
    assert 0.0 <= second["previous_images_called_fooling"] <= 1.0
    assert 0.0 <= second["eval_accuracy"] <= 1.0
    retrained = load_frozen(out / "round1" / "classifier")
    assert retrained.class_names[-1] == "fooling" and retrained.num_classes == 11
    # rerunning the same --workdir reuses the finished rounds
    again = json.loads(_cli(*args).stdout)
    assert again["median_confidence_per_round"] == data["median_confidence_per_round"]
