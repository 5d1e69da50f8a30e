"""`realsys train-gan` and `realsys sample`: training on the shared loop, the judge, exact resume,
the JSON report, pictures, and errors. Tiny nets (width 4) on 256 generated digits."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from interrupt import interrupt_at_step
from PIL import Image
from trees import assert_trees_equal
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.gan.config import GanConfig
from realsys_cli.gan.steps import GanSteps
from realsys_cli.gan.train import collapse_reasons, train_and_evaluate

TINY = "digits/train=256,test=64"
runner = CliRunner()
FIELDS = ("fid", "fid_real_floor", "fid_untrained", "num_samples", "class_coverage",
          "confident_fraction", "epochs", "train_seconds", "workdir")


def _logging_state():
    logger, absl = logging.getLogger("realsys"), logging.getLogger("absl")
    return list(logger.handlers), logger.level, logger.propagate, absl.level


def _restore(saved) -> None:
    """The app's callback sets the "realsys" logger up for a terminal; undo it so that other
    tests' caplog still sees realsys's records."""
    logger = logging.getLogger("realsys")
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    logging.getLogger("absl").setLevel(saved[3])


@pytest.fixture(autouse=True)
def _restore_logging():
    saved = _logging_state()
    yield
    _restore(saved)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CLI run, judge included (trained first, into WORKDIR/judge), shared below: the
    paper's settings (the flag that gives them), which the GanConfigs below start from."""
    saved = _logging_state()
    root = tmp_path_factory.mktemp("gan")
    mp = pytest.MonkeyPatch()
    mp.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    mp.chdir(root)
    workdir = root / "run"
    result = runner.invoke(app, ["train-gan", "--dataset", TINY, "--epochs", "2", "-b", "32",
                                 "--latent", "normal", "--set", "width=4", "--config", "dcgan_paper",
                                 "--set", "fid_samples=64", "--set", "grid_samples=16",
                                 "--set", "judge_epochs=2", "-w", str(workdir), "--json"])
    _restore(saved)
    yield workdir, result, root
    mp.undo()


def test_train_gan_json_has_the_promised_fields(trained):
    workdir, result, _ = trained
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON object on stdout
    for key in FIELDS:
        assert key in data, key
    assert data["epochs"] == 2 and data["steps"] == 16  # 256 images / batch 32, twice
    assert data["num_samples"] == data["num_real_samples"] == 64
    # Width 4 at 28 px, nz 100, no biases. G: project 100 x 7x7x8 = 39,200, BatchNorm(8) and
    # (4) scales and biases 24, 4x4 transposed convolutions 8 -> 4 (512) and 4 -> 1 (64).
    # D: 4x4 convolutions 1 -> 4 (64) and 4 -> 8 (512), BatchNorm(8) 16, the 7x7 8 -> 1 out 392.
    assert (data["g_params"], data["d_params"]) == (39_800, 984)
    # Shares of the 64 samples: whole numbers of samples, all 64 of them counted once.
    assert set(data["class_coverage"]) == set("0123456789")
    counts = [share * 64 for share in data["class_coverage"].values()]  # shares round to 4 places
    assert counts == pytest.approx([round(c) for c in counts], abs=0.01)
    assert sum(round(c) for c in counts) == 64
    assert data["min_class_share"] == min(data["class_coverage"].values())
    for key in ("confident_fraction", "real_confident_fraction"):  # exact means of 64 booleans
        assert data[key] * 64 == round(data[key] * 64), key
    # The floor (real vs real) is below the untrained generator's FID, by far.
    assert data["fid_real_floor"] < 0.5 * data["fid_untrained"]
    assert data["fid_ratio"] == pytest.approx(data["fid"] / data["fid_untrained"], rel=1e-12)
    assert data["judge"]["workdir"] == str(workdir / "judge")
    assert "penultimate" in data["judge"]["layer"] and data["judge"]["trained_by_train_gan"]
    assert data["latent_distribution"] == "normal" and data["workdir"] == str(workdir)
    # The judge was trained first, and that was said on stderr.
    assert "no --judge given" in result.stderr and (workdir / "judge" / "result.json").exists()
    for name in ("samples/epoch_001.png", "samples/epoch_002.png", "losses.png",
                 "metrics.jsonl", "config.json", "result.json"):
        assert (workdir / name).exists(), name
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("d_loss" in r and "g_loss" in r for r in records)
    fids = [r["eval_fid"] for r in records if "eval_fid" in r]
    assert len(fids) == 2 and fids[-1] == pytest.approx(data["fid"])


@pytest.mark.slow
def test_sample_grid_walk_and_score(trained):
    workdir, train_result, root = trained
    grid = runner.invoke(app, ["sample", "--from", str(workdir), "-n", "9", "--out",
                               str(root / "g.png"), "--json"])
    assert grid.exit_code == 0, grid.output
    assert json.loads(grid.stdout)["step"] == 16
    with Image.open(root / "g.png") as image:
        assert image.size == (176, 176)  # 3x3 of 28 px digits upscaled to 56, 2 px apart: 3*58+2

    strip = runner.invoke(app, ["sample", "--from", str(workdir), "--interpolate", "-n", "2",
                                "--frames", "4", "--out", str(root / "walk.png"), "--json"])
    assert strip.exit_code == 0, strip.output
    assert json.loads(strip.stdout)["images_per_walk"] == 5  # 2 points, 4 steps + the end
    assert json.loads(strip.stdout)["interpolation"] == "slerp"  # normal z

    gif = runner.invoke(app, ["sample", "--from", str(workdir), "--interpolate", "-n", "3",
                              "--points", "3", "--frames", "2", "--out", str(root / "w.gif")])
    assert gif.exit_code == 0, gif.output
    with Image.open(root / "w.gif") as image:
        assert image.n_frames == 6  # 3 legs (back to the start) x 2

    score = runner.invoke(app, ["sample", "--from", str(workdir), "--score", "--json"])
    assert score.exit_code == 0, score.output
    scored, trained_json = json.loads(score.stdout), json.loads(train_result.stdout)
    for key in ("fid", "fid_real_floor", "fid_untrained"):  # the same z, real sets and judge
        assert scored[key] == pytest.approx(trained_json[key], rel=1e-4), key
    assert scored["class_coverage"] == trained_json["class_coverage"]


def test_sample_by_class_rows_follow_the_judge(trained):
    workdir, _, root = trained
    result = runner.invoke(app, ["sample", "--from", str(workdir), "--by-class", "-n", "3",
                                 "--samples", "40", "--out", str(root / "c.png"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    shares = report["class_share"]
    assert list(shares) == [str(d) for d in range(10)]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    with Image.open(root / "c.png") as image:
        sheet = np.asarray(image.convert("RGB"))
    cell, label = 84 + 2, 14  # 28-px digits upscaled x3 to reach 80 px, then the caption
    assert sheet.shape == (10 * (cell + label) + 2, 3 * cell + 2, 3)
    for row, share in enumerate(shares.values()):  # as many samples as the judge gave the row
        filled = round(share * 40)
        for col in range(3):
            y, x = 2 + row * (cell + label), 2 + col * cell
            blank = bool((sheet[y : y + 84, x : x + 84] == 255).all())
            assert blank == (col >= filled), (row, col, filled)


def test_collapse_is_recognised_from_d_loss_or_spread():
    assert collapse_reasons(0.7, 0.9) == []
    assert ["D loss"] == [r[:6] for r in collapse_reasons(0.01, 0.9)]
    assert "nearly identical" in collapse_reasons(0.7, 0.05)[0]
    assert len(collapse_reasons(0.01, 0.05)) == 2


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    missing = runner.invoke(app, ["sample", "--from", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    size = runner.invoke(app, ["train-gan", "--set", "image_size=48", "-w", str(tmp_path / "w")])
    assert size.exit_code == 1 and "image_size must be 28, 32 or 64" in size.stderr


def _final_state(workdir) -> dict:
    """The latest checkpoint's whole state, loaded as `sample` does: both nets' weights and
    BatchNorm statistics, both Adam states, the weight average, the step and the key."""
    from realsys_cli.gan.sample import load_generator

    return load_generator(workdir).state


def _interrupt_at_step_11_and_resume(cfg: GanConfig, workdir) -> dict:
    """Ctrl-C arrives while step 11 runs (in epoch 2); then the same command again."""
    with interrupt_at_step(GanSteps, 11):
        train_and_evaluate(cfg, workdir)
    resumed = train_and_evaluate(cfg, workdir)
    assert resumed["resumed_from_step"] == 11 and resumed["steps"] == 16
    return resumed


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_uninterrupted(trained, tmp_path, monkeypatch):
    """The fixture's CLI run is the uninterrupted one; this one is stopped by Ctrl-C at step 11
    and resumed by running it again. Only the judge's location differs (same judge)."""
    workdir, train_result, root = trained
    monkeypatch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    straight = json.loads(train_result.stdout)
    cfg = GanConfig(dataset=TINY, width=4, batch_size=32, num_epochs=2,
                    latent_distribution="normal", fid_samples=64, grid_samples=16,
                    judge_epochs=2, judge=str(workdir / "judge"))
    resumed = _interrupt_at_step_11_and_resume(cfg, tmp_path / "resumed")
    assert_trees_equal(_final_state(workdir), _final_state(tmp_path / "resumed"))
    assert resumed["fid"] == straight["fid"]
    assert resumed["class_coverage"] == straight["class_coverage"]


@pytest.mark.slow  # three GAN runs, ~40 s on 2 cores
def test_resume_is_exact_with_every_option_beyond_the_paper(trained, tmp_path, monkeypatch):
    """Instance noise, the lr decay, G's own rate, two G steps, label smoothing and the weight
    average all live in the state or follow the step count: resuming changes nothing."""
    workdir, _, root = trained
    monkeypatch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    cfg = GanConfig(dataset=TINY, width=4, batch_size=32, num_epochs=2, fid_samples=64,
                    grid_samples=16, judge=str(workdir / "judge"), instance_noise=0.1,
                    instance_noise_final=0.02, lr_decay_start=0.5, g_learning_rate=4e-4,
                    g_steps=2, real_label=0.9, ema_decay=0.99)
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    resumed = _interrupt_at_step_11_and_resume(cfg, tmp_path / "resumed")
    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    assert "g_ema" in a  # the weight average is part of the compared state
    assert_trees_equal(a, b)
    assert resumed["fid"] == straight["fid"]
    assert resumed["fid_own_weights"] == straight["fid_own_weights"]


def test_resume_with_another_architecture_is_refused(trained, monkeypatch):
    from realsys_cli.errors import CheckpointError

    workdir, _, root = trained
    monkeypatch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    cfg = GanConfig(dataset=TINY, width=8, batch_size=32, num_epochs=2,
                    latent_distribution="normal", fid_samples=64, grid_samples=16)
    with pytest.raises(CheckpointError, match="another config.*width"):
        train_and_evaluate(cfg, workdir)
