"""The input pipeline on tiny in-memory sources: shuffling, epochs, resume, sharding, resizing,
channel conversion, padded evaluation batches."""

import numpy as np
import pytest
from PIL import Image

from realsys_cli.data.pipeline import (
    Shard,
    convert_channels,
    eval_batches,
    resize_square,
    steps_per_epoch,
    train_batches,
)


def make_source(n: int, side: int = 4, channels: int = 1) -> list[dict]:
    """Record i has label i and every pixel i (mod 256): a batch says which records it holds."""
    return [{"image": np.full((side, side, channels), i % 256, np.uint8), "label": i}
            for i in range(n)]


def labels_of(batches) -> list[list[int]]:
    return [b["label"].tolist() for b in batches]


def take(iterator, n: int) -> list[dict]:
    return [next(iterator) for _ in range(n)]


def test_train_batch_shapes_and_dtypes():
    batch = next(train_batches(make_source(12, side=5, channels=3), batch_size=4, seed=0))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (4, 5, 5, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    # Images and labels stay paired through the shuffle.
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["label"])


def test_video_records_batch_too():
    source = [{"video": np.full((3, 8, 8, 1), i, np.uint8)} for i in range(6)]
    batch = next(train_batches(source, batch_size=2, seed=0, image_size=4))
    assert set(batch) == {"video"}
    assert batch["video"].shape == (2, 3, 8, 8, 1)  # image_size leaves video alone


def test_each_epoch_is_a_permutation():
    batches = list(train_batches(make_source(12), batch_size=4, seed=3, num_epochs=2))
    assert len(batches) == 6  # 2 epochs x 3 batches, then the iterator ends
    epochs = [sum(labels_of(batches[i : i + 3]), []) for i in (0, 3)]
    for order in epochs:
        assert sorted(order) == list(range(12))
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    assert epochs[0] != list(range(12))  # shuffled at all


def test_same_seed_same_batches_other_seed_other_batches():
    source = make_source(24)
    a = labels_of(take(train_batches(source, batch_size=4, seed=7), 10))
    b = labels_of(take(train_batches(source, batch_size=4, seed=7), 10))
    c = labels_of(take(train_batches(source, batch_size=4, seed=8), 10))
    assert a == b
    assert a != c


def test_endless_stream_crosses_epochs_without_losing_records():
    """batch_size does not divide n: the stream goes on into the next epoch, drops nothing."""
    it = train_batches(make_source(10), batch_size=4, seed=0)
    flat = sum(labels_of(take(it, 5)), [])  # 20 records = exactly 2 epochs
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))


def test_resume_from_state_gives_exactly_the_next_batches():
    source = make_source(20)
    it = train_batches(source, batch_size=4, seed=1)
    take(it, 3)
    state = it.get_state()
    expected = take(it, 2)  # crosses into the second epoch (5 batches an epoch)
    expected += take(it, 4)
    resumed = train_batches(source, batch_size=4, seed=1)
    resumed.set_state(state)
    got = take(resumed, 6)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e["label"], g["label"])
        np.testing.assert_array_equal(e["image"], g["image"])
    # Without the state, a new iterator starts from the beginning instead.
    fresh = labels_of(take(train_batches(source, batch_size=4, seed=1), 5))
    assert fresh[3:5] == labels_of(expected[:2])
    assert fresh[:2] != labels_of(expected[:2])


@pytest.mark.parametrize("n", [12, 13])
def test_shards_are_disjoint_and_cover_everything(n):
    source = make_source(n)
    seen = []
    for index in range(2):
        shard = Shard(index, 2)
        batches = list(eval_batches(source, batch_size=4, shard=shard))
        seen.append([lb for b in batches for lb, m in zip(b["label"], b["mask"], strict=True) if m])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(n))
    # The training streams of the two shards split one epoch the same way.
    train = [sum(labels_of(train_batches(source, batch_size=2, seed=0, shard=Shard(i, 2),
                                         num_epochs=1)), []) for i in range(2)]
    assert all(lb % 2 == 0 for lb in train[0]) and all(lb % 2 == 1 for lb in train[1])
    assert len(set(train[0])) == len(train[0]) and len(set(train[1])) == len(train[1])
    assert len(train[0]) == len(train[1]) == 2 * (n // 2 // 2)  # full batches only


def test_shards_of_an_epoch_cover_all_records():
    source = make_source(16)
    parts = [sum(labels_of(train_batches(source, batch_size=4, seed=5, shard=Shard(i, 2),
                                         num_epochs=1)), []) for i in range(2)]
    assert len(parts[0]) == len(parts[1]) == 8
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(16))


def test_resize_square_non_square_centre_crop():
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, 20:40] = (200, 100, 50)  # the centre square
    out = resize_square(image, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 1:9], np.broadcast_to((200, 100, 50), (10, 8, 3)))
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[20:40] = 255
    out = resize_square(tall, 10)
    assert out.shape == (10, 10, 3)
    assert (out[1:9] == 255).all()


def test_resize_square_keeps_grayscale_and_upscales():
    image = np.arange(8 * 16, dtype=np.uint8).reshape(8, 16, 1)
    out = resize_square(image, 32)
    assert out.shape == (32, 32, 1) and out.dtype == np.uint8
    assert out.min() >= image[:, 4:12].min() and out.max() <= image[:, 4:12].max()
    assert (np.diff(out[16, :, 0].astype(int)) >= 0).all()  # the ramp stays a ramp
    square = np.full((6, 6, 1), 9, np.uint8)
    assert resize_square(square, 6) is square  # already the size: untouched


def test_train_batches_resize_mixed_sizes():
    source = [{"image": np.full((h, w, 3), h, np.uint8), "label": i}
              for i, (h, w) in enumerate([(10, 20), (30, 15), (16, 16), (40, 41)])]
    batch = next(train_batches(source, batch_size=4, seed=0, image_size=16))
    assert batch["image"].shape == (4, 16, 16, 3)
    for image, label in zip(batch["image"], batch["label"], strict=True):
        assert (image == source[label]["image"][0, 0, 0]).all()  # uniform images stay uniform


def test_eval_batches_pad_the_last_batch():
    batches = list(eval_batches(make_source(10), batch_size=4))
    assert len(batches) == 3
    for b in batches:
        assert b["image"].shape == (4, 4, 4, 1) and b["label"].shape == (4,)
        assert b["mask"].dtype == bool and b["mask"].shape == (4,)
    assert [b["mask"].tolist() for b in batches] == [[True] * 4, [True] * 4,
                                                     [True, True, False, False]]
    real = [lb for b in batches for lb, m in zip(b["label"].tolist(), b["mask"], strict=True) if m]
    assert real == list(range(10))  # every record once, in order
    assert sum(b["mask"].sum() for b in batches) == 10


def test_eval_batches_limit_and_resize():
    batches = list(eval_batches(make_source(10, side=6), batch_size=4, limit=5, image_size=3))
    assert len(batches) == 2
    assert batches[0]["image"].shape == (4, 3, 3, 1)
    real = [lb for b in batches for lb, m in zip(b["label"].tolist(), b["mask"], strict=True) if m]
    assert real == [0, 1, 2, 3, 4]


def test_eval_batches_same_count_on_every_shard():
    """9 records over 2 processes (5 + 4) at batch 4: both must run 2 collective eval steps."""
    source = make_source(9)
    counts = []
    for index in range(2):
        batches = list(eval_batches(source, batch_size=4, shard=Shard(index, 2)))
        counts.append(len(batches))
        assert all(b["image"].shape == (4, 4, 4, 1) for b in batches)
    assert counts == [2, 2]
    last = list(eval_batches(source, batch_size=4, shard=Shard(1, 2)))[-1]
    assert not last["mask"].any()  # the extra batch counts for nothing


@pytest.mark.parametrize(
    ("n", "batch", "shard", "expected"),
    [
        (100, 32, Shard(), 3),
        (96, 32, Shard(), 3),
        (100, 10, Shard(0, 3), 3),  # shards of 34, 33, 33
        (100, 10, Shard(2, 3), 3),
        (15, 4, Shard(0, 2), 1),  # shards of 8 and 7: both run 1 step
        (15, 4, Shard(1, 2), 1),
    ],
)
def test_steps_per_epoch(n, batch, shard, expected):
    assert steps_per_epoch(n, batch, shard) == expected


def test_a_batch_larger_than_the_data_is_refused():
    from realsys_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size 32 is larger than the 10 training "
                       "examples; use --batch-size 10 or less"):
        steps_per_epoch(10, 32)
    with pytest.raises(ConfigError, match="batch_size 8 is larger than the 7 training "
                       "examples; use --batch-size 6 or less"):
        steps_per_epoch(7, 4, Shard(0, 2))  # shards of 4 and 3


def test_steps_per_epoch_matches_the_stream():
    source = make_source(22)
    epoch = list(train_batches(source, batch_size=4, seed=0, num_epochs=1))
    assert len(epoch) == steps_per_epoch(22, 4) == 5


@pytest.mark.parametrize("rgb, grey", [
    ((200, 100, 50), 124),  # 0.299*200 + 0.587*100 + 0.114*50 = 124.2
    ((255, 0, 0), 76),  # 76.245
    ((0, 255, 0), 150),  # 149.685
    ((0, 0, 255), 29),  # 29.07
    ((255, 255, 255), 255),
    ((7, 7, 7), 7),  # equal channels (a grey PNG read as RGB) come back unchanged
])
def test_rgb_to_grey_is_itu_601_luma(rgb, grey):
    pixel = np.array(rgb, np.uint8).reshape(1, 1, 3)
    assert convert_channels(pixel, 1).tolist() == [[[grey]]]
    assert Image.fromarray(pixel).convert("L").getpixel((0, 0)) == grey  # what PIL says


def test_rgb_to_grey_matches_pil_on_every_pixel():
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    grey = convert_channels(images, 1)
    assert grey.shape == (3, 40, 50, 1) and grey.dtype == np.uint8
    for image, out in zip(images, grey, strict=True):
        assert (np.asarray(Image.fromarray(image).convert("L")) == out[..., 0]).all()


def test_grey_to_rgb_repeats_the_channel():
    grey = np.arange(12, dtype=np.uint8).reshape(2, 2, 3, 1) * 20
    rgb = convert_channels(grey, 3)
    assert rgb.shape == (2, 2, 3, 3)
    for c in range(3):
        assert (rgb[..., c] == grey[..., 0]).all()
    assert convert_channels(grey, 1) is grey  # already right: untouched
    with pytest.raises(ValueError, match="4-channel"):
        convert_channels(np.zeros((2, 2, 4), np.uint8), 3)


def test_batches_convert_to_the_models_channels():
    rgb = [{"image": np.full((4, 4, 3), (200, 100, 50), np.uint8), "label": i} for i in range(4)]
    (batch,) = list(eval_batches(rgb, batch_size=4, channels=1))
    assert batch["image"].shape == (4, 4, 4, 1) and (batch["image"] == 124).all()
    grey = make_source(8)
    batch = next(train_batches(grey, batch_size=4, seed=0, channels=3, image_size=2))
    assert batch["image"].shape == (4, 2, 2, 3)
    for image, label in zip(batch["image"], batch["label"], strict=True):
        assert (image == label).all()  # record i is all i: every channel of it too
