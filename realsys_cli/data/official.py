"""The TFDS datasets realsys downloads and prepares itself, without TensorFlow.

TFDS's own builders for these need TensorFlow to prepare (they read with tf.io.gfile and hand
numpy images to an Image feature, which encodes them with TensorFlow). Each builder here is the
official one with only its input side replaced: it reads the upstream files that
`download.fetch` verified, and feeds PNG/JPEG bytes. Name, version, features and label names
stay TFDS's, so the result lands in the same `<data_dir>/<name>/<config>/<version>` directory
and reads like a dataset TFDS prepared. TFDS registers `moving_mnist` only when TensorFlow is
installed (its Video feature needs it), so that one is a builder of ours of the same name, with
the clips as zlib-compressed uint8 tensors (the built-in moving-digits' format).

  mnist, fashion_mnist   gzip'd IDX files           {"image" (28, 28, 1), "label"}
  cifar10, cifar100      the binary tar.gz            {"id", "image" (32, 32, 3), "label"(, "coarse_label")}
  imagenette/<config>    fast.ai's tgz, JPEG folders  {"image" (H, W, 3), "label"}
  moving_mnist           mnist_test_seq.npy           {"image_sequence" (20, 64, 64, 1)}, test only

The sizes and SHA-256 sums are TFDS's (its url_checksums and checksums.tsv files; a test checks
they still agree with the installed tensorflow_datasets).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.datasets.imagenette import imagenette_dataset_builder as tfds_imagenette
from tensorflow_datasets.image_classification import cifar as tfds_cifar
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from realsys_cli.data.download import RemoteFile
from realsys_cli.errors import DatasetError

_MNIST = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASTAI = "https://s3.amazonaws.com/fast-ai-imageclas/"


def _png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 1 or 3) -> PNG bytes (PIL, not TensorFlow)."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def _rgb_jpeg(data: bytes) -> bytes:
    """JPEG bytes as they are when RGB; greyscale and CMYK JPEGs (imagenette has both) become
    RGB JPEGs, so that every image decodes to (H, W, 3) as the feature promises."""
    from realsys_cli.data.folder import load_rgb

    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG" and im.mode == "RGB":
            return data
    buffer = io.BytesIO()
    load_rgb(io.BytesIO(data)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class _FromLocalFiles:
    """The input side every builder here shares: the verified local files, by role."""

    local_files: dict[str, Path] = {}

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        return self._splits(self.local_files)

    def _splits(self, files: dict[str, Path]) -> dict[str, Iterator]:
        raise NotImplementedError


# ------------------------------------------------------------------------- mnist, fashion_mnist
def read_idx(path: Path, *, dims: int) -> np.ndarray:
    """A gzip'd IDX file (LeCun's format: magic 0x0000 0x08 <dims>, big-endian sizes) -> uint8."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 + 4 * dims or data[:3] != b"\x00\x00\x08" or data[3] != dims:
        raise DatasetError(f"{path.name} is not a uint8 IDX file of {dims} dimension(s)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{path.name} holds {body.size} bytes, its header says {shape}")
    return body.reshape(shape)


class _Idx(_FromLocalFiles):
    def _splits(self, files: dict[str, Path]) -> dict[str, Iterator]:
        return {split: self._idx_examples(files[f"{split}_images"], files[f"{split}_labels"])
                for split in ("train", "test")}

    def _idx_examples(self, images_path: Path, labels_path: Path) -> Iterator:
        images = read_idx(images_path, dims=3)  # (N, 28, 28)
        labels = read_idx(labels_path, dims=1)  # (N,)
        if len(images) != len(labels):
            raise DatasetError(f"{images_path.name} has {len(images)} images, "
                               f"{labels_path.name} {len(labels)} labels")
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": _png(image[..., None]), "label": int(label)}


class Mnist(_Idx, tfds_mnist.MNIST, skip_registration=True):
    name = "mnist"


class FashionMnist(_Idx, tfds_mnist.FashionMNIST, skip_registration=True):
    name = "fashion_mnist"


def _idx_files(base: str, sizes_and_sums: dict[str, tuple[int, str]]) -> dict[str, RemoteFile]:
    roles = {"train_images": "train-images-idx3-ubyte.gz", "train_labels":
             "train-labels-idx1-ubyte.gz", "test_images": "t10k-images-idx3-ubyte.gz",
             "test_labels": "t10k-labels-idx1-ubyte.gz"}
    return {role: RemoteFile(base + name, *sizes_and_sums[name]) for role, name in roles.items()}


MNIST_FILES = _idx_files(_MNIST, {
    "train-images-idx3-ubyte.gz":
        (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz":
        (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz":
        (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz":
        (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
})
FASHION_MNIST_FILES = _idx_files(_FASHION, {
    "train-images-idx3-ubyte.gz":
        (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "train-labels-idx1-ubyte.gz":
        (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "t10k-images-idx3-ubyte.gz":
        (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "t10k-labels-idx1-ubyte.gz":
        (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
})


# ---------------------------------------------------------------------------- cifar10, cifar100
def _tar_member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.extractfile(name)
    except KeyError:
        raise DatasetError(f"{Path(tar.name or '').name} has no {name}") from None
    if member is None:
        raise DatasetError(f"{name} in {tar.name} is not a file")
    return member.read()


class _CifarBinary(_FromLocalFiles):
    """cifar-10-binary.tar.gz / cifar-100-binary.tar.gz: records of <label bytes> + 3072 bytes
    of (3, 32, 32) pixels; label names in text files beside them."""

    def _splits(self, files: dict[str, Path]) -> dict[str, Iterator]:
        info = self._cifar_info
        with tarfile.open(files["archive"], "r:gz") as tar:
            for key, label_file in zip(info.label_keys, info.label_files):
                text = _tar_member(tar, info.prefix + label_file).decode()
                self.info.features[key].names = [n for n in text.split("\n") if n.strip()]
        return {"train": self._cifar_examples(files["archive"], "train_", info.train_files),
                "test": self._cifar_examples(files["archive"], "test_", info.test_files)}

    def _cifar_examples(self, archive: Path, prefix: str, names: list[str]) -> Iterator:
        keys = self._cifar_info.label_keys
        record = len(keys) + 3072
        index = 0
        with tarfile.open(archive, "r:gz") as tar:
            for name in names:
                data = np.frombuffer(_tar_member(tar, self._cifar_info.prefix + name), np.uint8)
                if data.size % record:
                    raise DatasetError(f"{name}: {data.size} bytes is not a whole number of "
                                       f"{record}-byte records")
                rows = data.reshape(-1, record)
                images = rows[:, len(keys):].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                for labels, image in zip(rows[:, : len(keys)], images):
                    example = {k: int(v) for k, v in zip(keys, labels)}
                    example.update(id=f"{prefix}{index:05d}", image=_png(image))
                    yield index, example
                    index += 1


class Cifar10(_CifarBinary, tfds_cifar.Cifar10, skip_registration=True):
    name = "cifar10"


class Cifar100(_CifarBinary, tfds_cifar.Cifar100, skip_registration=True):
    name = "cifar100"


# ---------------------------------------------------------------------------------- imagenette
class Imagenette(_FromLocalFiles, tfds_imagenette.Builder, skip_registration=True):
    """fast.ai's archive streamed (never extracted): <dirname>/{train,val}/<wnid>/*.JPEG."""

    name = "imagenette"

    def _info(self) -> tfds.core.DatasetInfo:
        # The official _info reads metadata files next to its module, which is not ours.
        return tfds.core.DatasetInfo(
            builder=self,
            description="Imagenette: 10 easily classified classes of ImageNet (fast.ai).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(
                    names_file=tfds.core.tfds_path(tfds_imagenette._LABELS_FNAME)),
            }),
            supervised_keys=("image", "label"),
            homepage="https://github.com/fastai/imagenette",
        )

    def _splits(self, files: dict[str, Path]) -> dict[str, Iterator]:
        return {"train": self._jpegs(files["archive"], "train"),
                "validation": self._jpegs(files["archive"], "val")}

    def _jpegs(self, archive: Path, split_dir: str) -> Iterator:
        labels = set(self.info.features["label"].names)
        prefix = f"{self.builder_config.dirname}/{split_dir}/"
        count = 0
        with tarfile.open(archive, "r|gz") as tar:  # one sequential pass, no extraction
            for member in tar:
                parts = member.name.removeprefix("./").split("/")
                if not (member.isfile() and "/".join(parts[:2]) + "/" == prefix
                        and len(parts) == 4 and parts[2] in labels
                        and parts[3].lower().endswith((".jpeg", ".jpg"))):
                    continue
                data = tar.extractfile(member).read()
                count += 1
                yield parts[3], {"image": _rgb_jpeg(data), "label": parts[2]}
        if count == 0:
            raise DatasetError(f"{archive.name} has no images under {prefix}")


_IMAGENETTE_SUMS = {
    "imagenette2.tgz":
        (1557161267, "6cbfac238434d89fe99e651496f0812ebc7a10fa62bd42d6874042bf01de4efd"),
    "imagenette2-320.tgz":
        (341663724, "569b4497c98db6dd29f335d1f109cf315fe127053cedf69010d047f0188e158c"),
    "imagenette2-160.tgz":
        (99003388, "64d0c4859f35a461889e0147755a999a48b49bf38a7e0f9bd27003f10db02fe5"),
    "imagenette.tgz":
        (1556495367, "1bd650bc16884ca88e4f0f537ed8569b1f8d7ae865d37eba8ecdd87d9cd9dcfa"),
    "imagenette-320.tgz":
        (341289752, "0e3ac85d7f3fd0a63d5e27d85c68511be9ac4dae260345b6f7434a0d4fa24b3f"),
    "imagenette-160.tgz":
        (98752094, "4bacf19aa3f2454e330ac366c98ac1e470ccc6bebca8ff63ecc7f339cb2ead11"),
}


# -------------------------------------------------------------------------------- moving_mnist
class MovingMnist(_FromLocalFiles, tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The Moving MNIST test set of Srivastava et al. 2015: 10,000 clips of 20 frames."""

    name = "moving_mnist"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "realsys: TFDS's features, clips as zlib'd uint8 tensors."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Moving MNIST (Srivastava et al. 2015): two digits bouncing in 64x64 "
            "frames; the authors' 10,000 test clips of 20 frames.",
            features=tfds.features.FeaturesDict({
                "image_sequence": tfds.features.Tensor(
                    shape=(20, 64, 64, 1), dtype=np.uint8,
                    encoding=tfds.features.Encoding.ZLIB),
            }),
            homepage="http://www.cs.toronto.edu/~nitish/unsupervised_video/",
        )

    def _splits(self, files: dict[str, Path]) -> dict[str, Iterator]:
        return {"test": self._clips(files["clips"])}

    def _generate_examples(self, **kwargs: Any) -> Iterator:  # abstract in TFDS; unused
        raise NotImplementedError

    def _clips(self, path: Path) -> Iterator:
        try:
            clips = np.load(path, mmap_mode="r", allow_pickle=False)  # (20, N, 64, 64)
        except ValueError as e:
            raise DatasetError(f"{path.name} is not a .npy array file: {e}") from None
        if clips.ndim != 4 or clips.shape[0] != 20 or clips.shape[2:] != (64, 64) or (
                clips.dtype != np.uint8):
            raise DatasetError(f"{path.name} holds {clips.dtype} {clips.shape}; Moving MNIST is "
                               "uint8 (20, N, 64, 64)")
        for i in range(clips.shape[1]):
            yield i, {"image_sequence": np.ascontiguousarray(clips[:, i, :, :, None])}


# ------------------------------------------------------------------------------- the registry
@dataclasses.dataclass(frozen=True)
class Official:
    """A TFDS name realsys can acquire: its builder and, per builder, the files it needs."""

    builder_class: type[tfds.core.DatasetBuilder]
    files: Callable[[tfds.core.DatasetBuilder], dict[str, RemoteFile]]
    summary: str


def _imagenette_files(builder: tfds.core.DatasetBuilder) -> dict[str, RemoteFile]:
    name = f"{builder.builder_config.dirname}.tgz"
    return {"archive": RemoteFile(_FASTAI + name, *_IMAGENETTE_SUMS[name])}


OFFICIAL: dict[str, Official] = {
    "mnist": Official(Mnist, lambda b: MNIST_FILES, "handwritten digits, 28x28 grey"),
    "fashion_mnist": Official(FashionMnist, lambda b: FASHION_MNIST_FILES,
                              "Zalando clothing, 28x28 grey"),
    "cifar10": Official(Cifar10, lambda b: {"archive": RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", 170052171,
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd")},
        "10 classes, 32x32 colour"),
    "cifar100": Official(Cifar100, lambda b: {"archive": RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", 168513733,
        "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec")},
        "100 classes, 32x32 colour"),
    "imagenette": Official(Imagenette, _imagenette_files,
                           "10 ImageNet classes; configs full-size-v2, 320px-v2, 160px-v2"),
    "moving_mnist": Official(MovingMnist, lambda b: {"clips": RemoteFile(
        "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy", 819200096,
        "c2a3e8d3939c001ab77bf543f130157424efa486bb4d0974d2cebb773b13f8b3")},
        "10,000 test clips, 20 frames of 64x64 (evaluation)"),
}


def official_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder | None:
    """`imagenette/320px-v2[:1.0.0]` -> our builder for it, or None for a name we do not know."""
    base, _, version = name.partition(":")
    base, _, config = base.partition("/")
    if base not in OFFICIAL:
        return None
    cls = OFFICIAL[base].builder_class
    configs = [c.name for c in getattr(cls, "BUILDER_CONFIGS", [])]
    if config and config not in configs:
        valid = ", ".join(f"{base}/{c}" for c in configs) if configs else base
        raise DatasetError(f"{base} has no config {config!r}; valid: {valid}")
    if version and version != str(cls.VERSION):
        raise DatasetError(f"{base} is at version {cls.VERSION} here, not {version}")
    kwargs: dict[str, Any] = {"config": config or configs[0]} if configs else {}
    return cls(data_dir=data_dir, file_format="array_record", **kwargs)


def remote_files(builder: tfds.core.DatasetBuilder) -> dict[str, RemoteFile]:
    return OFFICIAL[builder.name].files(builder)
