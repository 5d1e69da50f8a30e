"""Local image folders through the real TFDS path: a folder of mixed PNG/JPEG files (sizes, modes,
corrupt files) made in tmp_path, prepared by `open_dataset(..., data_dir=ROOT)`, read back.
"""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realsys_cli.data.dataset import open_dataset
from realsys_cli.errors import DatasetError

CLASSES = ("classA", "classB", "n01440764")  # sorted: label order


@pytest.fixture
def realsys_log(caplog, monkeypatch):
    """Capture the "realsys" logger whatever an earlier test (the CLI's setup_logging) did to it."""
    logger = logging.getLogger("realsys")
    monkeypatch.setattr(logger, "handlers", [caplog.handler])
    monkeypatch.setattr(logger, "propagate", False)
    caplog.set_level(logging.INFO, logger="realsys")  # setLevel: also clears logging's cache
    return caplog


def _save(path: Path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _rgb(h, w, value):
    return Image.new("RGB", (w, h), value)


def make_folder(root: Path) -> dict[tuple[int, int], tuple[int, np.ndarray, float]]:
    """ROOT/train/<class>/ and ROOT/val/<class>/ with every image a unique (H, W).

    Returns {(H, W): (label, expected RGB pixel, tolerance)} for every readable image.
    """
    expected: dict[tuple[int, int], tuple[int, np.ndarray, float]] = {}

    def add(split, label, name, image, pixel, tol=0.0, **kwargs):
        _save(root / split / CLASSES[label] / name, image, **kwargs)
        h, w = image.size[1], image.size[0]
        assert (h, w) not in expected
        expected[(h, w)] = (label, np.array(pixel), tol)

    # train: 8 readable images over the 3 classes, every mode the builder converts.
    add("train", 0, "rgb.png", _rgb(20, 30, (10, 200, 30)), (10, 200, 30))
    add("train", 0, "gray.png", Image.new("L", (17, 21), 77), (77, 77, 77))
    add("train", 0, "rgba.png", Image.new("RGBA", (19, 23), (255, 0, 0, 0)), (255, 255, 255))
    add("train", 1, "rgb.jpg", _rgb(32, 24, (0, 0, 255)), (0, 0, 255), tol=8, quality=95)
    add("train", 1, "cmyk.jpg", Image.new("CMYK", (27, 18), (0, 255, 255, 0)), (255, 0, 0),
        tol=8, quality=95)
    add("train", 1, "deep.png", Image.fromarray(np.full((15, 25), 32768, np.uint16)),
        (128, 128, 128))
    palette = Image.new("P", (26, 22), 1)
    palette.putpalette([0, 0, 0, 0, 128, 255] + [0] * (3 * 254))
    add("train", 2, "palette.png", palette, (0, 128, 255))
    add("train", 2, "gray.jpg", Image.new("L", (29, 16), 200), (200, 200, 200), tol=4)
    # corrupt: random bytes named .jpg, a truncated PNG; and a non-image file that is ignored.
    (root / "train" / "classA" / "noise.jpg").write_bytes(os.urandom(500))
    good = root / "train" / "classB" / "good.png"
    _save(good, Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)))
    data = good.read_bytes()
    (root / "train" / "classB" / "truncated.png").write_bytes(data[: len(data) // 2])
    good.unlink()
    (root / "train" / "classA" / "notes.txt").write_text("not an image")
    # val: one per class.
    add("val", 0, "a.png", _rgb(12, 13, (1, 2, 3)), (1, 2, 3))
    add("val", 1, "b.png", Image.new("LA", (14, 11), (90, 255)), (90, 90, 90))
    add("val", 2, "c.jpeg", _rgb(10, 16, (250, 250, 0)), (250, 250, 0), tol=8)
    return expected


def _records(source):
    return [source[i] for i in range(len(source))]


def test_folder_prepares_and_reads_back(tmp_path, realsys_log):
    root = tmp_path / "imagefolder"
    expected = make_folder(root)
    ds = open_dataset("mine", data_dir=root)
    assert ds.kind == "image"
    assert ds.element_shape == (None, None, 3)
    assert ds.class_names == ("classA", "classB", "tench")  # the imagenette wnid is named
    assert ds.splits == {"train": 8, "validation": 3}  # 2 corrupt files skipped
    assert (ds.train_split, ds.eval_split) == ("train", "validation")
    assert ds.path.startswith(str(tmp_path / "tfds" / "realsys_folder"))
    seen = set()
    for split in ("train", "validation"):
        for record in _records(ds.source(split)):
            image = record["image"]
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            label, pixel, tol = expected[image.shape[:2]]
            assert record["label"] == label
            centre = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
            assert np.abs(centre - pixel).max() <= tol, (image.shape, centre, pixel)
            assert np.abs(image.astype(int) - centre).max() <= tol  # uniform images stay so
            seen.add(image.shape[:2])
    assert seen == set(expected)

    ours = [r for r in realsys_log.records if r.name == "realsys"]
    warnings = [r for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert message.startswith("skipped 2 unreadable image(s):")
    assert os.path.join("train", "classA", "noise.jpg") in message
    assert os.path.join("train", "classB", "truncated.png") in message
    assert "notes.txt" not in message


def test_folder_is_prepared_once_and_again_when_changed(tmp_path, realsys_log):
    root = tmp_path / "imagefolder"
    make_folder(root)
    first = open_dataset("mine", data_dir=root)
    prepared = [r for r in realsys_log.records if r.name == "realsys"
                and r.getMessage().startswith("Preparing folder")]
    assert len(prepared) == 1
    realsys_log.clear()

    again = open_dataset("mine", data_dir=root)
    assert again.path == first.path and again.splits == first.splits
    assert not [r for r in realsys_log.records if r.name == "realsys"]  # no preparation, no warning about the corrupt files again

    _save(root / "train" / "classB" / "new.png", _rgb(33, 35, (5, 5, 5)))
    changed = open_dataset("mine", data_dir=root)
    assert changed.path != first.path
    assert changed.splits == {"train": 9, "validation": 3}
    shapes = {r["image"].shape for r in _records(changed.source("train"))}
    assert (33, 35, 3) in shapes
    assert not Path(first.path).exists()  # the stale preparation is gone


def test_folder_test_split_and_validation_name(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "test"):
        for i, cls in enumerate(("cat", "dog")):
            _save(root / split / cls / f"{i}.png", _rgb(8 + i, 8, (i, i, i)))
    ds = open_dataset("x", data_dir=root)
    assert ds.splits == {"train": 2, "test": 2}
    assert ds.eval_split == "test" and ds.class_names == ("cat", "dog")


def _two_classes(split_dir: Path, classes=("a", "b")):
    for cls in classes:
        _save(split_dir / cls / "x.png", _rgb(8, 8, (0, 0, 0)))


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"data folder .*nowhere does not exist"):
        open_dataset("x", data_dir=tmp_path / "nowhere")


def test_no_train_folder(tmp_path):
    _two_classes(tmp_path / "r" / "val")
    with pytest.raises(DatasetError, match=r"has no train/ folder; expected ROOT/train/<class>"):
        open_dataset("x", data_dir=tmp_path / "r")


def test_train_but_no_eval_split(tmp_path):
    _two_classes(tmp_path / "r" / "train")
    (tmp_path / "r" / "other").mkdir()
    with pytest.raises(DatasetError, match=r"has train/ but no val/, validation/ or test/ split"):
        open_dataset("x", data_dir=tmp_path / "r")


def test_single_class(tmp_path):
    _two_classes(tmp_path / "r" / "train", classes=("only",))
    _two_classes(tmp_path / "r" / "val", classes=("only",))
    with pytest.raises(DatasetError, match=r"has 1 class folder\(s\); a classifier needs at least 2"):
        open_dataset("x", data_dir=tmp_path / "r")


def test_empty_split(tmp_path):
    _two_classes(tmp_path / "r" / "train")
    (tmp_path / "r" / "val" / "a").mkdir(parents=True)
    (tmp_path / "r" / "val" / "a" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"val contains no images"):
        open_dataset("x", data_dir=tmp_path / "r")


def test_eval_class_missing_from_train(tmp_path):
    _two_classes(tmp_path / "r" / "train")
    _two_classes(tmp_path / "r" / "val", classes=("a", "zebra"))
    with pytest.raises(DatasetError, match=r"has classes that train/ lacks: zebra"):
        open_dataset("x", data_dir=tmp_path / "r")


def test_split_of_only_unreadable_images(tmp_path, realsys_log):
    root = tmp_path / "r"
    _two_classes(root / "train")
    (root / "val" / "a").mkdir(parents=True)
    (root / "val" / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    for _ in range(2):  # the second open must not find a prepared, empty split
        with pytest.raises(DatasetError, match=r"every image of split validation is unreadable"):
            open_dataset("x", data_dir=root)
