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
    for key in ("dataset", "model", "num_params", "epochs", "steps", "eval_accuracy",
                "eval_top5_accuracy", "train_seconds", "train_images_per_second", "workdir"):
        assert key in data
    assert data["model"] == "lenet" and data["num_params"] == 857_738
    assert data["recipe"] == "lenet_digits"  # picked by the dataset; --epochs wins over it
    assert data["steps"] == 32 and data["epochs"] == 4  # exactly 4 epochs: no floor
    assert 0.0 <= data["eval_accuracy"] <= data["eval_top5_accuracy"] <= 1.0
    assert data["eval_accuracy"] > 0.2  # 32 steps on 256 digits: well above chance (0.1)
    for name in ("curves.png", "confusion.png", "config.json", "metrics.jsonl", "result.json"):
        assert (workdir / name).exists(), name
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in r for r in lines) and any("loss" in r for r in lines)


def test_evaluate_reports_per_class_and_confusion(trained, monkeypatch):
    workdir, train_result, root = trained
    monkeypatch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    result = _run("evaluate", "--classifier", str(workdir), "--json")
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
    result = _run("classify", "-C", str(workdir), "-", "--json", "--top", "3",
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
    _one_line_error(_run("classify", "-C", str(workdir), str(bad)), "cannot read image")


def test_missing_workdir_is_one_line(tmp_path):
    _one_line_error(_run("evaluate", "--classifier", str(tmp_path / "nope")), "does not exist")


def test_workdir_without_classifier_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(_run("classify", "-C", str(tmp_path / "empty"), "x.png"),
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


# ------------------------------------------------------------- another channel count
def _digits_as_rgb_folder(root, tfds_dir):
    """The tiny digits as RGB PNG files: train/ from its train split, val/ from its test split."""
    from realsys_cli.data.dataset import open_dataset

    data = open_dataset(TINY, tfds_dir=tfds_dir)
    for split, folder in (("train", "train"), ("test", "val")):
        source = data.source(split)
        for i in range(len(source)):
            record = source[i]
            path = root / folder / str(record["label"]) / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(record["image"][..., 0]).convert("RGB").save(path)
    return root


@pytest.fixture(scope="module")
def rgb_folder(trained):
    _, _, root = trained
    return _digits_as_rgb_folder(root / "digits_rgb", root / "tfds")


def test_grey_model_evaluates_rgb_files(trained, rgb_folder, monkeypatch):
    """The 1-channel digits LeNet on a folder of RGB PNGs of the same test digits: each file is
    converted to its luma, which gives back the grey pixels exactly, so every number is equal."""
    workdir, _, root = trained
    monkeypatch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    builtin = json.loads(_run("evaluate", "--classifier", str(workdir), "--json").stdout)
    result = _run("evaluate", "--classifier", str(workdir), "--data-dir", str(rgb_folder),
                  "--json")
    assert result.exit_code == 0, result.output  # was: conv_general_dilated ... 3 // 1 != 1
    folder = json.loads(result.stdout)
    assert folder["split"] == "validation" and folder["examples"] == builtin["examples"] == 64
    assert folder["accuracy"] == builtin["accuracy"]
    assert np.array_equal(folder["confusion"], builtin["confusion"])


def test_grey_model_perturbs_rgb_files(trained, rgb_folder, monkeypatch):
    """fool --method perturb reads its real images through the same conversion."""
    from realsys_cli.fool.perturb import load_test_images
    from realsys_cli.fool.target import load_frozen

    workdir, _, root = trained
    net = load_frozen(workdir)
    images, labels = load_test_images(net, "digits_rgb", data_dir=str(rgb_folder),
                                      tfds_dir=str(root / "tfds"), limit=8)
    assert images.shape == (8, 28, 28, 1) and images.dtype == np.uint8 and labels.shape == (8,)
    originals = {np.asarray(Image.open(p).convert("L")).tobytes()
                 for p in (rgb_folder / "val").glob("*/*.png")}
    assert all(image[..., 0].tobytes() in originals for image in images)


def test_fool_perturb_reads_data_dir(trained, rgb_folder, tmp_path):
    """fool --data-dir: perturb starts from the folder's images, not the classifier's own."""
    workdir, _, root = trained
    out = tmp_path / "perturbed"
    result = _run("-q", "fool", "-C", str(workdir), "--method", "perturb", "--data-dir",
                  str(rgb_folder), "--tfds-data-dir", str(root / "tfds"), "-t", "3",
                  "--attack-steps", "2", "-w", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["method"] == "perturb"
    originals = np.load(out / "images.npz")["originals"]
    files = {np.asarray(Image.open(p).convert("L")).tobytes()
             for p in (rgb_folder / "val").glob("*/*.png")}
    assert len(originals) and all(image[..., 0].tobytes() in files for image in originals)


@pytest.mark.slow
def test_rgb_model_evaluates_grey_images(trained, rgb_folder, monkeypatch, tmp_path):
    """A 3-channel LeNet trained on the RGB files meets the grey built-in digits repeated to 3
    channels: the same numbers as on its own folder's copies of those digits."""
    _, _, root = trained
    monkeypatch.setenv("TFDS_DATA_DIR", str(root / "tfds"))
    workdir = tmp_path / "rgb_run"
    result = _run("-q", "train-classifier", "--data-dir", str(rgb_folder), "--model", "lenet",
                  "--epochs", "2", "--batch-size", "32", "--workdir", str(workdir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["eval_split"] == "validation"
    own = json.loads(_run("evaluate", "--classifier", str(workdir), "--json").stdout)
    result = _run("evaluate", "--classifier", str(workdir), "--dataset", TINY, "--json")
    assert result.exit_code == 0, result.output
    grey = json.loads(result.stdout)
    assert (own["split"], grey["split"]) == ("validation", "test")
    assert grey["examples"] == own["examples"] == 64
    assert grey["accuracy"] == own["accuracy"]
    assert np.array_equal(grey["confusion"], own["confusion"])
    image = tmp_path / "grey.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    result = _run("classify", "-C", str(workdir), str(image), "--json")
    assert result.exit_code == 0, result.output
