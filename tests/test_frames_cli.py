"""`realsys predict-frames` from the command line: the JSON schema, the movie, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realsys_cli.cli import app

TINY = "moving-digits/train=32,test=8,frames=8"
SMALL = ["--model", "convlstm", "--set", "input_frames=3", "--set", "output_frames=2", "--set", "hidden_channels=8",
         "--set", "kernel_size=3"]
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny predict-frames run shared by the tests below (its own TFDS dir)."""
    root = tmp_path_factory.mktemp("frames")
    mp = pytest.MonkeyPatch()
    mp.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    result = _run("-q", "predict-frames", "--dataset", TINY, "--steps", "4", "--batch-size", "8",
                  *SMALL, "--workdir", str(root / "run"), "--json")
    yield root / "run", result, mp
    mp.undo()


def test_train_json_has_the_promised_fields(trained):
    workdir, result, _ = trained
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is exactly one JSON object
    for key in ("mse_per_frame", "ssim_per_frame", "psnr_per_frame", "mae_per_frame",
                "baseline_copy_last_mse_per_frame", "baseline_mean_frame_mse_per_frame",
                "mean_mse", "mean_ssim", "train_seconds", "workdir"):
        assert key in data, key
    for key in ("mse_per_frame", "ssim_per_frame", "psnr_per_frame",
                "baseline_copy_last_mse_per_frame", "baseline_mean_frame_mse_per_frame"):
        assert len(data[key]) == 2 and all(np.isfinite(data[key])), key
    assert data["mean_mse"] == pytest.approx(np.mean(data["mse_per_frame"]), abs=2e-3)
    assert all(-1 <= s <= 1 for s in data["ssim_per_frame"])
    assert data["steps"] == 4 and data["eval_sequences"] == 8 and data["workdir"] == str(workdir)
    assert data["train_seconds"] > 0
    for name in ("horizon.png", "predictions.png", "curves.png", "metrics.jsonl", "config.json",
                 "result.json"):
        assert (workdir / name).exists(), name
    assert json.loads((workdir / "result.json").read_text()) == data


def test_rollout_movie_runs_past_the_training_horizon(trained, tmp_path):
    workdir, _, _ = trained
    out = tmp_path / "movie.gif"
    result = _run("predict-frames", "--workdir", str(workdir), "--rollout", "7", "--out",
                  str(out), "--count", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # 3 frames read + 7 predicted; the clips have 8 frames, so truth for 5 of the 7
    assert data["gif_frames"] == 3 + 7 and data["truth_frames"] == 5
    assert data["rollout"] == 7 and data["training_horizon"] == 2 and data["sequences"] == 2
    assert len(data["mse_per_frame"]) == 5
    with Image.open(out) as movie:
        assert movie.n_frames == 10
        first = np.asarray(movie.convert("L"))
        movie.seek(9)
        last = np.asarray(movie.convert("L"))
    assert first.shape == last.shape and not np.array_equal(first, last)


def test_rollout_shapes_from_the_library(trained):
    from realsys_cli.frames.evaluate import load_trained
    from realsys_cli.frames.rollout import rollout

    workdir, _, _ = trained
    model = load_trained(workdir)
    observed = np.zeros((3, 3, 64, 64, 1), np.uint8)
    frames = rollout(model, observed, 9)
    assert frames.shape == (3, 9, 64, 64, 1) and frames.dtype == np.float32
    assert np.all((frames >= 0) & (frames <= 1))


def _one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert pattern in result.stderr.replace("\n", " "), result.stderr


def test_movie_without_a_trained_workdir_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(_run("predict-frames", "--workdir", str(tmp_path / "empty"), "--rollout",
                         "5"), "no predict-frames run")
    _one_line_error(_run("predict-frames", "--rollout", "5"), "pass its --workdir")


def test_movie_refuses_training_options(trained):
    workdir, _, _ = trained
    _one_line_error(_run("predict-frames", "--workdir", str(workdir), "--rollout", "5",
                         "--steps", "3"), "--steps only apply to training")
    _one_line_error(_run("predict-frames", "--workdir", str(workdir), "--rollout", "5",
                         "--print-config"), "--print-config only apply to training")
    _one_line_error(_run("predict-frames", "--workdir", str(workdir), "--out", "m.gif"),
                    "add --rollout")


def test_a_convlstm_run_resumed_without_its_model_names_the_difference(trained):
    """A ConvLSTM run (the default before SimVP) given back without --model convlstm: the
    default SimVP recipe differs, and the one-line error says in which fields."""
    workdir, _, _ = trained
    without_model = [a for a in SMALL if a not in ("--model", "convlstm")]
    without_model += ["--set", "simvp_skip=last"]  # SimVP's skip needs 3 -> 3 frames otherwise
    result = _run("predict-frames", "--dataset", TINY, "--steps", "4", "--batch-size", "8",
                  *without_model, "--workdir", str(workdir))
    _one_line_error(result, "model ('convlstm' -> 'simvp')")


def test_recipe_file_is_the_documented_default():
    from pathlib import Path

    from realsys_cli.config import resolve_config
    from realsys_cli.frames.config import FramesConfig

    recipe = Path(__file__).parents[1] / "configs" / "convlstm_moving_digits.toml"
    assert resolve_config(FramesConfig, config_file=recipe) == FramesConfig()


def test_bad_loss_is_a_usage_error():
    result = _run("predict-frames", "--loss", "l1")
    assert result.exit_code == 2 and result.stdout == ""
