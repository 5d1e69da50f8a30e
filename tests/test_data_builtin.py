"""The built-in datasets through the real TFDS path: prepared into the per-test TFDS dir by the
same builder code users run, read back with `open_dataset`, and checked against the renderers.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from realsys_cli.data import builtin
from realsys_cli.data.dataset import open_dataset, prepare
from realsys_cli.data.render_digits import make_digits
from realsys_cli.data.render_moving import make_moving_digits
from realsys_cli.data.render_shapes import SHAPE_NAMES, make_shapes
from realsys_cli.errors import DatasetError

DIGITS = "digits/train=200,test=50"
SHAPES = "shapes/size=32,train=100,test=20"
MOVING = "moving-digits/train=20,test=5,frames=6"


def _all(source, key):
    return np.stack([source[i][key] for i in range(len(source))])


def _labels(source):
    return np.array([source[i]["label"] for i in range(len(source))])


def _sorted_rows(array):
    """Records are shuffled when written: compare them as a sorted set of flat rows."""
    flat = array.reshape(len(array), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_digits_prepare_and_read_back(tmp_path):
    ds = open_dataset(DIGITS)
    assert ds.path.startswith(str(tmp_path / "tfds"))
    assert ds.kind == "image"
    assert ds.element_shape == (28, 28, 1)
    assert ds.splits == {"train": 200, "test": 50}
    assert ds.class_names == tuple(str(d) for d in range(10))
    assert ds.num_classes == 10
    assert (ds.train_split, ds.eval_split) == ("train", "test")
    train = ds.source("train")
    assert len(train) == 200 and len(ds.source("test")) == 50
    record = train[0]
    assert set(record) == {"image", "label"}
    assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
    assert isinstance(record["label"], int)
    labels = _labels(train)
    assert labels.min() >= 0 and labels.max() <= 9
    assert set(labels.tolist()) == set(range(10))  # 200 draws: every class is there
    images = _all(train, "image")
    assert images.max() > 200 and 0.03 < (images > 128).mean() < 0.4  # real strokes, not zeros


def test_digits_records_are_the_renderers_output():
    """Exactly what render_digits makes for the split's chunk seed, lossless (zlib)."""
    train = open_dataset(DIGITS).source("train")
    expected_x, expected_y = make_digits(200, builtin._chunk_seed(0, "train", 0))
    got_x, got_y = _all(train, "image")[..., 0], _labels(train)
    np.testing.assert_array_equal(np.bincount(got_y, minlength=10),
                                  np.bincount(expected_y, minlength=10))
    rows = np.c_[got_y, got_x.reshape(200, -1)]
    expected_rows = np.c_[expected_y, expected_x.reshape(200, -1)]
    np.testing.assert_array_equal(_sorted_rows(rows), _sorted_rows(expected_rows))


def test_train_and_test_do_not_overlap():
    ds = open_dataset(DIGITS)
    train = {im.tobytes() for im in _all(ds.source("train"), "image")}
    test = {im.tobytes() for im in _all(ds.source("test"), "image")}
    assert len(train) == 200 and len(test) == 50
    assert not train & test


def test_shapes_prepare_and_read_back():
    ds = open_dataset(SHAPES)
    assert ds.kind == "image"
    assert ds.element_shape == (32, 32, 3)
    assert ds.splits == {"train": 100, "test": 20}
    assert ds.class_names == SHAPE_NAMES and len(SHAPE_NAMES) == 10
    train = ds.source("train")
    images, labels = _all(train, "image"), _labels(train)
    assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
    assert labels.min() >= 0 and labels.max() <= 9
    assert set(labels.tolist()) == set(range(10))
    # PNG is lossless: the records are exactly the rendered images.
    expected_x, expected_y = make_shapes(100, builtin._chunk_seed(0, "train", 0), size=32)
    rows = np.c_[labels, images.reshape(100, -1)]
    expected_rows = np.c_[expected_y, expected_x.reshape(100, -1)]
    np.testing.assert_array_equal(_sorted_rows(rows), _sorted_rows(expected_rows))


def test_moving_digits_prepare_and_read_back():
    ds = open_dataset(MOVING)
    assert ds.kind == "video"
    assert ds.element_shape == (6, 64, 64, 1)
    assert ds.class_names == () and ds.num_classes == 0
    assert ds.splits == {"train": 20, "test": 5}
    train = ds.source("train")
    record = train[3]
    assert set(record) == {"video"}
    assert record["video"].shape == (6, 64, 64, 1) and record["video"].dtype == np.uint8
    clips = _all(train, "video")
    assert clips.shape == (20, 6, 64, 64, 1)
    expected = make_moving_digits(20, builtin._chunk_seed(0, "train", 0), num_frames=6)
    np.testing.assert_array_equal(_sorted_rows(clips), _sorted_rows(np.asarray(expected)))
    # The digits move: consecutive frames differ.
    assert (clips[:, 1:] != clips[:, :-1]).any(axis=(2, 3, 4)).all()


def test_default_params_name_the_default_config(tmp_path):
    parsed = builtin.parse_builtin("digits")
    assert parsed is not None
    spec, params, name = parsed
    assert params == {"seed": 0, "train": 60_000, "test": 10_000}
    assert name == "default"
    # Key order does not matter: the config dir is canonical.
    a = builtin.parse_builtin("shapes/train=100,size=32,test=20")
    b = builtin.parse_builtin("shapes/size=32,test=20,train=100")
    assert a is not None and b is not None and a[2] == b[2] == "size=32,test=20,train=100"


@pytest.mark.parametrize("spec", [DIGITS, SHAPES])
def test_same_seed_same_records_in_another_data_dir(tmp_path, spec):
    key = "image"
    a = open_dataset(spec, tfds_dir=tmp_path / "a").source("train")
    b = open_dataset(spec, tfds_dir=tmp_path / "b").source("train")
    np.testing.assert_array_equal(_all(a, key), _all(b, key))  # same order too
    np.testing.assert_array_equal(_labels(a), _labels(b))


def test_different_seed_different_records():
    a = open_dataset(DIGITS).source("train")
    b = open_dataset(DIGITS + ",seed=1").source("train")
    assert len(a) == len(b) == 200
    ims_a, ims_b = _all(a, "image"), _all(b, "image")
    assert not {x.tobytes() for x in ims_a} & {x.tobytes() for x in ims_b}
    assert np.abs(_sorted_rows(ims_a).astype(int) - _sorted_rows(ims_b)).mean() > 5


def test_second_open_does_not_prepare_again(tmp_path, monkeypatch):
    first = open_dataset(SHAPES)
    info = tmp_path / "tfds" / "realsys_shapes" / "size=32,test=20,train=100" / "1.0.0"
    assert (info / "dataset_info.json").is_file()
    mtime = (info / "dataset_info.json").stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)
    again = open_dataset(SHAPES)
    assert again.splits == first.splits
    np.testing.assert_array_equal(again.source("test")[0]["image"],
                                  first.source("test")[0]["image"])
    assert (info / "dataset_info.json").stat().st_mtime_ns == mtime
    assert prepare(SHAPES) is not None  # `datasets prepare` of a prepared one: a no-op too
    # The patch is live: a new spec would have to prepare, and does call it.
    with pytest.raises(AssertionError, match="prepared again"):
        open_dataset("shapes/size=32,train=100,test=21")


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("digits/foo=1", "valid: seed=, train=, test="),
        ("shapes/foo=1", "valid: size=, seed=, train=, test="),
        ("moving-digits/size=64", "valid: seed=, train=, test=, frames="),
        ("digits/train", "valid: seed=, train=, test="),
        ("shapes/size=9", "size must be between 28 and 256, got 9"),
        ("shapes/size=300", "size must be between 28 and 256, got 300"),
        ("digits/train=0", "train and test must be at least 1"),
        ("digits/train=ten", "train must be an integer, got 'ten'"),
        ("moving-digits/frames=1", "frames must be between 2 and 100, got 1"),
    ],
)
def test_bad_params_name_the_valid_keys(spec, needle, tmp_path):
    with pytest.raises(DatasetError) as info:
        open_dataset(spec)
    assert needle in str(info.value)
    assert not (tmp_path / "tfds").exists()  # nothing was prepared


def test_missing_split_is_a_dataset_error():
    ds = open_dataset(DIGITS)
    with pytest.raises(DatasetError, match="no split 'validation'; splits: train, test"):
        ds.source("validation")
