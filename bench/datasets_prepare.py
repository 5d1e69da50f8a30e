"""How long `realsys datasets prepare NAME` takes from a local mirror, on full-size stand-ins.

    .venv/bin/python bench/datasets_prepare.py [--only mnist,cifar10] [--keep DIR]

The real files cannot be downloaded on these machines, so this writes stand-ins of the real
sizes in the exact upstream formats (tests/mirror.py's writers: 60,000 + 10,000 rendered digits
as gzip'd IDX; CIFAR's binary tar.gz of 50,000 + 10,000 random images; imagenette2-160.tgz with
9,469 + 3,925 JPEGs of about 160 px; mnist_test_seq.npy of 10,000 rendered moving-digit clips),
serves them on 127.0.0.1 as REALSYS_DATASETS_MIRROR, and times the real command: connect,
download, verify, prepare. Prints one line per dataset and a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import mirror  # noqa: E402


def write_standins(folder: Path, only: set[str]) -> None:
    import numpy as np

    from realsys_cli.data.render_moving import make_moving_digits

    if "mnist" in only:
        mirror.write_mnist(folder / "mnist", train=60_000, test=10_000)
    if "fashion_mnist" in only:
        mirror.write_mnist(folder / "fashion_mnist", train=60_000, test=10_000, seed=7)
    if "cifar10" in only:
        mirror.write_cifar10(folder / "cifar10", per_batch=10_000)
    if "cifar100" in only:
        mirror.write_cifar100(folder / "cifar100", train=50_000, test=10_000)
    if "imagenette/160px-v2" in only:
        mirror.write_imagenette(folder / "imagenette", per_class=947, val_per_class=392,
                                side=160)
    if "moving_mnist" in only:
        clips = np.concatenate([make_moving_digits(1000, seed)[..., 0] for seed in range(10)])
        (folder / "moving_mnist").mkdir(parents=True, exist_ok=True)
        np.save(folder / "moving_mnist" / "mnist_test_seq.npy", clips.transpose(1, 0, 2, 3))
    for sub in folder.iterdir():
        mirror.write_sums(sub)


def main() -> None:
    names = ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagenette/160px-v2",
             "moving_mnist"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(names))
    parser.add_argument("--keep", type=Path, help="write the stand-ins here and keep them")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        standins = args.keep or Path(tmp) / "mirror"
        start = time.perf_counter()
        write_standins(standins, only)
        print(f"stand-ins written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        rows = []
        with mirror.MirrorServer(standins) as server:
            for name in [n for n in names if n in only]:
                tfds_dir = Path(tmp) / "tfds"
                env = dict(os.environ, REALSYS_DATASETS_MIRROR=server.url + "/{name}")
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "realsys_cli", "-q", "datasets", "prepare",
                                name, "--tfds-data-dir", str(tfds_dir), "--json"],
                               check=True, env=env, stdout=subprocess.DEVNULL)
                seconds = time.perf_counter() - start
                base = name.split("/")[0]
                mb = sum(p.stat().st_size for p in (standins / base).iterdir()) / 1e6
                rows.append((name, mb, seconds))
                print(f"{name}: {mb:,.0f} MB served, prepared in {seconds:.0f} s", flush=True)
        print("\n| dataset | stand-in size | download + verify + prepare |\n|---|---|---|")
        for name, mb, seconds in rows:
            print(f"| {name} | {mb:,.0f} MB | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
