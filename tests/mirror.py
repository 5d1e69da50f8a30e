"""A dataset mirror for tests: upstream files made here in their exact formats, served over HTTP
on 127.0.0.1 with Range support, a request log, and faults on demand (a connection cut after
N bytes, a server that ignores Range).

  mnist / fashion_mnist   train-images-idx3-ubyte.gz, ... (gzip'd IDX, LeCun's headers)
  cifar10 / cifar100      cifar-10-binary.tar.gz / cifar-100-binary.tar.gz (TFDS's source)
  imagenette              imagenette2-160.tgz: imagenette2-160/{train,val}/<wnid>/*.JPEG,
                          noisy_imagenette.csv, greyscale and CMYK JPEGs among the RGB ones
  moving_mnist            mnist_test_seq.npy, uint8 (20, N, 64, 64)
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from realsys_cli.data import render_digits

IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257")


# ------------------------------------------------------------------------------ file formats
def idx_gz(array: np.ndarray) -> bytes:
    """uint8 array -> gzip'd IDX bytes: 0x0000, type 0x08 (ubyte), ndim, big-endian dims."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), mtime=0)


def write_mnist(folder: Path, *, train: int, test: int, seed: int = 0) -> dict:
    """The four MNIST files, with digits rendered by realsys; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n, prefix in (("train", train, "train"), ("test", test, "t10k")):
        images, labels = render_digits.make_digits(n, seed + (split == "test"))  # (n, 28, 28)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx_gz(images))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx_gz(labels.astype(np.uint8)))
        arrays[split] = (images, labels)
    return arrays


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_cifar10(folder: Path, *, per_batch: int, seed: int = 0) -> dict:
    """cifar-10-binary.tar.gz: 5 train batches + a test batch of <label><3072 CHW bytes>."""
    rng = np.random.default_rng(seed)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    members = {"cifar-10-batches-bin/batches.meta.txt": ("\n".join(names) + "\n\n").encode()}
    arrays = {"train": [], "test": []}
    for file, split in [(f"data_batch_{i}.bin", "train") for i in range(1, 6)] + [
            ("test_batch.bin", "test")]:
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
        rows = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(
            per_batch, -1)], axis=1)
        members[f"cifar-10-batches-bin/{file}"] = rows.tobytes()
        arrays[split].append((images, labels))
    folder.mkdir(parents=True, exist_ok=True)
    _tar(folder / "cifar-10-binary.tar.gz", members)
    return {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
            for k, v in arrays.items()}


def write_cifar100(folder: Path, *, train: int, test: int, seed: int = 0) -> dict:
    """cifar-100-binary.tar.gz: <coarse label><fine label><3072 CHW bytes> records."""
    rng = np.random.default_rng(seed)
    members = {
        "cifar-100-binary/coarse_label_names.txt": "\n".join(f"super{i}" for i in range(20))
        .encode(),
        "cifar-100-binary/fine_label_names.txt": "\n".join(f"fine{i}" for i in range(100))
        .encode(),
    }
    arrays = {}
    for split, n in (("train", train), ("test", test)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, n, dtype=np.uint8)
        coarse = (fine // 5).astype(np.uint8)
        rows = np.concatenate([coarse[:, None], fine[:, None],
                               images.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1)
        members[f"cifar-100-binary/{split}.bin"] = rows.tobytes()
        arrays[split] = (images, fine, coarse)
    folder.mkdir(parents=True, exist_ok=True)
    _tar(folder / "cifar-100-binary.tar.gz", members)
    return arrays


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_imagenette(folder: Path, *, per_class: int = 2, val_per_class: int | None = None,
                     dirname: str = "imagenette2-160", classes: int = 10, side: int = 75,
                     seed: int = 0) -> dict:
    """fast.ai's layout: <dirname>/{train,val}/<wnid>/<wnid>_<n>.JPEG and noisy_imagenette.csv.
    Shorter sides near `side`, smooth colour fields for content. Every class's first train image
    is greyscale and its second CMYK, as some real ones are. Returns {(split, file): (wnid, mode)}.
    """
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    made = {}
    csv = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,"
           "noisy_labels_50,is_valid"]
    counts = {"train": per_class, "val": per_class if val_per_class is None else val_per_class}
    for split, count in counts.items():
        for wnid in IMAGENETTE_WNIDS[:classes]:
            for i in range(count):
                h = int(side * rng.uniform(0.9, 1.1))
                w = int(h * rng.uniform(1.0, 1.5))
                mode = {0: "L", 1: "CMYK"}.get(i, "RGB") if split == "train" else "RGB"
                field = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
                image = Image.fromarray(field).resize((w, h), Image.Resampling.BICUBIC)
                if mode != "RGB":
                    image = image.convert(mode)
                name = f"{wnid}_{split}{i}.JPEG"
                members[f"{dirname}/{split}/{wnid}/{name}"] = _jpeg(image)
                made[(split, name)] = (wnid, mode)
                csv.append(f"{split}/{wnid}/{name},{wnid},{wnid},{wnid},{wnid},{wnid},"
                           f"{split == 'val'}")
    members[f"{dirname}/noisy_imagenette.csv"] = ("\n".join(csv) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    _tar(folder / f"{dirname}.tgz", members)
    return made


def write_moving_mnist(folder: Path, *, clips: int, seed: int = 0) -> np.ndarray:
    """mnist_test_seq.npy as the authors ship it: uint8 (20, N, 64, 64), time first."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (20, clips, 64, 64), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "mnist_test_seq.npy", array)
    return array


def write_sums(folder: Path) -> dict[str, str]:
    """SHA256SUMS of every file in `folder`, as `sha256sum` writes it."""
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != "SHA256SUMS"}
    (folder / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    return sums


# ---------------------------------------------------------------------------------- the server
class MirrorServer:
    """`with MirrorServer(root) as server:` serves `root` at `server.url`.

    `cut_after[name] = n`: the first response for `name` sends n bytes, then drops the
    connection. `ignore_range`: answer every request with the whole file (HTTP 200).
    `requests`: (path, Range header or None) of every request, in order.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                mirror.requests.append((self.path, self.headers.get("Range")))
                path = mirror.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                ranged = self.headers.get("Range")
                if ranged and not mirror.ignore_range:
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = mirror.cut_after.pop(path.name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def files_requested(self) -> list[str]:
        return [p.lstrip("/") for p, _ in self.requests]

    def __enter__(self) -> MirrorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
