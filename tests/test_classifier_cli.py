"""`realsys train-classifier`, `evaluate` and `classify` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realsys_cli.cli import app

TINY = "digits/train=256,test=64"
runner = CliRunner()


def _run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny classifier run shared by the tests below (its own TFDS dir)."""
    root = tmp_path_factory.mktemp("trained")
    workdir = root / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    result = _run("-q", "train-classifier", "--dataset", TINY, "--epochs", "4",
                  "--batch-size", "32", "--workdir", str(workdir), "--json")
    yield workdir, result, root
    mp.undo()


def test_train_json_has_the_promised_fields(trained):
    workdir, result, _ = trained
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("dataset", "model", "num_params", "epochs", "steps", "test_accuracy",
                "test_top5_accuracy", "train_seconds", "train_images_per_second", "workdir"):
        assert key in data
    assert data["model"] == "lenet" and data["num_params"] == 857_738
    assert data["steps"] == 32 and data["epochs"] == 4
    assert 0.0 <= data["test_accuracy"] <= data["test_top5_accuracy"] <= 1.0
    assert data["test_accuracy"] > 0.2  # 32 steps on 256 digits: well above chance (0.1)
    for name in ("curves.png", "confusion.png", "config.json", "metrics.jsonl", "result.json"):
        assert (workdir / name).exists(), name
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in r for r in lines) and any("loss" in r for r in lines)


def test_evaluate_reports_per_class_and_confusion(trained, monkeypatch):
    workdir, train_result, root = trained
    monkeypatch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    result = _run("evaluate", "--workdir", str(workdir), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    confusion = np.array(data["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 64
    assert data["accuracy"] == pytest.approx(confusion.trace() / 64)
    assert set(data["per_class_accuracy"]) == set("0123456789")
    # The best checkpoint is the one evaluated: its accuracy matches the best eval in training.
    evals = [json.loads(line).get("eval_accuracy")
             for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert data["accuracy"] == pytest.approx(max(e for e in evals if e is not None))


def test_classify_reads_paths_from_stdin(trained, tmp_path):
    workdir, _, _ = trained
    paths = []
    for i, mode in enumerate(["L", "RGB"]):
        image = Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 30, 3), np.uint8))
        path = tmp_path / f"x{i}.png"
        image.convert(mode).save(path)
        paths.append(str(path))
    result = _run("classify", "--workdir", str(workdir), "-", "--json", "--top", "3",
                  input="\n".join(paths) + "\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["image"] for r in data["images"]] == paths
    for row in data["images"]:
        probs = [t["probability"] for t in row["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert all(0 <= p <= 1 for p in probs)


def _one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("error:")
    assert pattern in result.stderr.replace("\n", " "), result.stderr


def test_unreadable_image_is_one_line(trained, tmp_path):
    workdir, _, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    _one_line_error(_run("classify", "--workdir", str(workdir), str(bad)), "cannot read image")


def test_missing_workdir_is_one_line(tmp_path):
    _one_line_error(_run("evaluate", "--workdir", str(tmp_path / "nope")), "does not exist")


def test_workdir_without_classifier_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(_run("classify", "--workdir", str(tmp_path / "empty"), "x.png"),
                    "no classifier run")


def test_unknown_model_is_one_line():
    _one_line_error(_run("train-classifier", "--dataset", TINY, "--model", "vgg"),
                    "unknown model 'vgg'")


def test_image_too_small_for_alexnet_is_one_line():
    _one_line_error(_run("train-classifier", "--dataset", TINY, "--model", "alexnet"),
                    "too small for alexnet")


def test_unknown_dataset_is_one_line():
    _one_line_error(_run("train-classifier", "--dataset", "no_such_dataset_xyz"),
                    "unknown dataset")


def test_bad_set_override_is_one_line():
    _one_line_error(_run("train-classifier", "--set", "batch_size=lots"),
                    "batch_size must be an integer")
