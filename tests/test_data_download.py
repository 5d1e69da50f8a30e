"""Datasets in one command, offline: upstream files made in their exact formats, served by a
mirror on 127.0.0.1, downloaded, verified, prepared without TensorFlow and read back exactly.
"""

import hashlib
import io
import socket
import time
from pathlib import Path

import mirror as upstream
import numpy as np
import pytest
from PIL import Image

from realsys_cli.data import download, official
from realsys_cli.data.dataset import open_dataset
from realsys_cli.errors import DatasetError, NetworkError


def test_mnist_downloaded_verified_prepared_and_read_exactly(served, tmp_path):
    arrays = upstream.write_mnist(served.root, train=60, test=20)
    upstream.write_sums(served.root)
    data = open_dataset("mnist")
    assert data.splits == {"train": 60, "test": 20}
    assert data.element_shape == (28, 28, 1) and data.class_names == tuple("0123456789")
    assert Path(data.path) == tmp_path / "tfds" / "mnist" / "3.0.1"
    for split in ("train", "test"):
        images, labels = arrays[split]
        got = sorted((r["label"], r["image"].tobytes()) for r in data.source(split))
        want = sorted((int(lb), im[..., None].tobytes()) for im, lb in zip(images, labels))
        assert got == want  # every image, pixel for pixel, with its label
    assert set(served.files_requested()) == {"SHA256SUMS", "train-images-idx3-ubyte.gz",
                                             "train-labels-idx1-ubyte.gz",
                                             "t10k-images-idx3-ubyte.gz",
                                             "t10k-labels-idx1-ubyte.gz"}
    served.requests.clear()
    assert open_dataset("mnist").splits == {"train": 60, "test": 20}
    assert served.requests == []  # prepared once: nothing fetched again


def test_mirror_with_a_folder_per_dataset(served, monkeypatch):
    """fashion_mnist's files are named like mnist's: `{name}` keeps them apart on one mirror."""
    upstream.write_mnist(served.root / "fashion_mnist", train=30, test=10, seed=5)
    upstream.write_sums(served.root / "fashion_mnist")
    monkeypatch.setenv(download.MIRROR_ENV, served.url + "/{name}")
    data = open_dataset("fashion_mnist")
    assert data.splits == {"train": 30, "test": 10}
    assert data.class_names[0] == "T-shirt/top"
    assert all(p.startswith("fashion_mnist/") for p in served.files_requested())


def test_cifar10_binary_archive(served):
    arrays = upstream.write_cifar10(served.root, per_batch=8)
    upstream.write_sums(served.root)
    data = open_dataset("cifar10")
    assert data.splits == {"train": 40, "test": 8}
    assert data.class_names[:3] == ("airplane", "automobile", "bird")
    images, labels = arrays["test"]
    records = sorted(data.source("test"), key=lambda r: r["image"].tobytes())
    want = sorted(zip(images, labels), key=lambda p: p[0].tobytes())
    for record, (image, label) in zip(records, want):  # (3, 32, 32) on disk -> (32, 32, 3)
        np.testing.assert_array_equal(record["image"], image)
        assert record["label"] == label


def test_cifar100_reads_the_fine_label(served):
    arrays = upstream.write_cifar100(served.root, train=12, test=6)
    upstream.write_sums(served.root)
    data = open_dataset("cifar100")
    assert data.num_classes == 100 and data.class_names[7] == "fine7"
    images, fine, _ = arrays["test"]
    by_image = {r["image"].tobytes(): r["label"] for r in data.source("test")}
    assert by_image == {im.tobytes(): int(f) for im, f in zip(images, fine)}


def test_imagenette_archive_with_greyscale_and_cmyk(served):
    made = upstream.write_imagenette(served.root, per_class=3)
    upstream.write_sums(served.root)
    data = open_dataset("imagenette/160px-v2")
    assert data.splits == {"train": 30, "validation": 30}
    assert data.class_names[:2] == ("tench", "English springer")
    assert data.eval_split == "validation"
    modes = [mode for (split, _), (_, mode) in made.items() if split == "train"]
    assert modes.count("L") == 10 and modes.count("CMYK") == 10
    for record in data.source("train"):  # every image RGB, whatever its file's mode
        assert record["image"].ndim == 3 and record["image"].shape[2] == 3
    assert len(data.source("val")) == 30  # the folder's name for the split works too
    assert served.files_requested() == ["SHA256SUMS", "imagenette2-160.tgz"]


def test_moving_mnist_test_file(served, tmp_path):
    clips = upstream.write_moving_mnist(served.root, clips=5)
    upstream.write_sums(served.root)
    data = open_dataset("moving_mnist")
    assert data.kind == "video" and data.splits == {"test": 5}
    assert data.element_shape == (20, 64, 64, 1)
    got = sorted(r["video"].tobytes() for r in data.source("test"))
    want = sorted(clips[:, i, :, :, None].tobytes() for i in range(5))  # time first on disk
    assert got == want
    # A test split only: preview shows it, and the list says it is prepared.
    from realsys_cli.data import catalog

    shown = catalog.preview("moving_mnist", tmp_path / "clips.gif", count=3)
    assert shown["split"] == "test" and (tmp_path / "clips.gif").stat().st_size > 0
    rows = {r["name"]: r for r in catalog.list_datasets()}
    assert rows["moving_mnist"]["prepared"] == "yes"
    assert rows["mnist"]["prepared"] == "no (downloaded on first use)"


# ------------------------------------------------------------------------------ the transfer
def _mnist_remote(served, name="train-images-idx3-ubyte.gz"):
    data = (served.root / name).read_bytes()
    return data, download.RemoteFile(f"http://upstream.invalid/{name}", len(data),
                                     hashlib.sha256(data).hexdigest())


def test_connection_cut_mid_file_resumes_with_range(served, tmp_path):
    upstream.write_mnist(served.root, train=400, test=5)
    data, remote = _mnist_remote(served)
    served.cut_after[remote.name] = len(data) // 3
    path = download.fetch(remote, tmp_path / "dl", dataset="mnist")
    assert path.read_bytes() == data
    ranges = [r for p, r in served.requests if p.endswith(remote.name)]
    assert ranges == [None, f"bytes={len(data) // 3}-"]
    assert not (tmp_path / "dl" / f"{remote.name}.part").exists()


def test_interrupted_download_resumes_next_run(served, tmp_path):
    """What Ctrl-C leaves (a .part) is continued by the next run, ending bit-identical."""
    upstream.write_mnist(served.root, train=400, test=5)
    data, remote = _mnist_remote(served)
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / f"{remote.name}.part").write_bytes(data[:1000])
    path = download.fetch(remote, tmp_path / "dl", dataset="mnist")
    assert path.read_bytes() == data
    assert served.requests == [("/SHA256SUMS", None), (f"/{remote.name}", "bytes=1000-")]


def test_server_that_ignores_range_starts_over(served, tmp_path):
    upstream.write_mnist(served.root, train=50, test=5)
    data, remote = _mnist_remote(served)
    served.ignore_range = True
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / f"{remote.name}.part").write_bytes(b"junk" * 100)
    assert download.fetch(remote, tmp_path / "dl", dataset="mnist").read_bytes() == data


def test_wrong_checksum_fails_cleanly_and_can_be_accepted(served, tmp_path, monkeypatch):
    """No SHA256SUMS on the mirror: realsys's own sums (the real files') reject these."""
    upstream.write_mnist(served.root, train=20, test=5)
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        open_dataset("mnist")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    name = "train-images-idx3-ubyte.gz"
    actual = hashlib.sha256((served.root / name).read_bytes()).hexdigest()
    assert f"{name} from {served.url}/{name} has SHA-256 {actual}" in message
    assert f"expected {official.MNIST_FILES['train_images'].sha256}" in message
    assert f"REALSYS_DATASETS_ACCEPT={actual}" in message and "\n" not in message
    tfds_dir = tmp_path / "tfds"
    assert not (tfds_dir / "mnist").exists()  # nothing that could read as prepared
    downloads = tfds_dir / "downloads" / "realsys" / "mnist"
    assert (downloads / f"{name}.unverified").is_file() and not (downloads / name).exists()
    # Accepting every mismatching sum lets the run go on with the kept download.
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in served.root.iterdir()}
    monkeypatch.setenv(download.ACCEPT_ENV, ",".join(sums.values()))
    served.requests.clear()
    assert open_dataset("mnist").splits == {"train": 20, "test": 5}
    assert f"/{name}" not in [p for p, _ in served.requests]  # not downloaded again


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mirror_that_does_not_answer_fails_within_5_s(monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    with pytest.raises(NetworkError) as info:
        open_dataset("mnist")
    assert time.perf_counter() - start < 5
    assert "REALSYS_DATASETS_MIRROR" in str(info.value) and "--data-dir" in str(info.value)


@pytest.fixture
def no_sockets(monkeypatch):
    """Opening any socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("opened a socket")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_no_download_never_opens_a_socket(no_sockets, monkeypatch):
    monkeypatch.setenv(download.NO_DOWNLOAD_ENV, "1")
    with pytest.raises(DatasetError) as info:
        open_dataset("mnist")
    assert "downloads are off (--no-download or REALSYS_NO_DOWNLOAD)" in str(info.value)


def test_builtin_sums_agree_with_the_installed_tfds():
    """The sizes and sums realsys carries are TFDS's own (url_checksums / checksums.tsv)."""
    import tensorflow_datasets as tfds

    root = Path(tfds.__file__).parent
    listed = {}
    for path in list((root / "url_checksums").glob("*.txt")) + [
            root / "datasets" / "imagenette" / "checksums.tsv"]:
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                listed[parts[0]] = (int(parts[1]), parts[2])
    remotes = [*official.MNIST_FILES.values(), *official.FASHION_MNIST_FILES.values()]
    for name in ("cifar10", "cifar100", "moving_mnist"):
        remotes += official.OFFICIAL[name].files(None).values()
    for config in ("full-size-v2", "320px-v2", "160px-v2", "160px"):
        builder = official.official_builder(f"imagenette/{config}", "unused")
        remotes += official.remote_files(builder).values()
    for remote in remotes:
        assert listed[remote.url] == (remote.size, remote.sha256), remote.url


def test_rgb_jpeg_conversion_keeps_rgb_bytes():
    rgb = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(rgb, format="JPEG")
    assert official._rgb_jpeg(rgb.getvalue()) == rgb.getvalue()
    cmyk = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk, format="JPEG")
    with Image.open(io.BytesIO(official._rgb_jpeg(cmyk.getvalue()))) as im:
        assert im.mode == "RGB"
        r, g, b = np.asarray(im)[4, 4]
        assert r > 200 and g < 60 and b < 60  # CMYK (0, 255, 255, 0) is red


def test_train_classifier_on_mnist_in_one_command(served, tmp_path):
    """The whole path, as a user types it: not prepared -> download -> verify -> prepare ->
    the dataset picks lenet -> train; then evaluate reads the same prepared copy."""
    import json

    from typer.testing import CliRunner

    from realsys_cli.cli import app

    upstream.write_mnist(served.root, train=256, test=64)
    upstream.write_sums(served.root)
    runner = CliRunner()
    result = runner.invoke(app, ["train-classifier", "--dataset", "mnist", "--epochs", "2",
                                 "--batch-size", "32", "--workdir", str(tmp_path / "w"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["dataset"], data["model"], data["recipe"]) == ("mnist", "lenet", "lenet_digits")
    assert data["steps"] == 16 and data["eval_examples"] == 64
    assert "recipe: lenet_digits" in result.stderr and "SHA256SUMS" in result.stderr
    served.requests.clear()
    evaluated = runner.invoke(app, ["evaluate", "--workdir", str(tmp_path / "w"), "--json",
                                    "--no-download"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["examples"] == 64 and served.requests == []
