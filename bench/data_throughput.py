"""Data-layer throughput: images/s out of `train_batches` (read, decode, resize, shuffle, batch).

    .venv/bin/python bench/data_throughput.py [--tfds-data-dir DIR] [--batches 60]

Prepares the datasets first if needed (the time is printed), then times the iterator alone, as
a training step would see it; no model runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time

SPECS = ["digits", "shapes", "shapes/size=224,train=4000,test=400"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tfds-data-dir", default=None)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--specs", default=";".join(SPECS), help="';'-separated dataset specs")
    args = parser.parse_args()
    if args.tfds_data_dir:
        os.environ["TFDS_DATA_DIR"] = args.tfds_data_dir

    from realsys_cli.data import pipeline
    from realsys_cli.data.dataset import open_dataset

    for spec in args.specs.split(";"):
        t0 = time.perf_counter()
        dataset = open_dataset(spec)
        open_s = time.perf_counter() - t0
        source = dataset.source(dataset.train_split)
        batches = pipeline.train_batches(source, batch_size=args.batch_size, seed=0)
        next(batches)  # threads started, first records decoded
        t0 = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        seconds = time.perf_counter() - t0
        print(json.dumps({
            "dataset": spec, "shape": list(dataset.element_shape),
            "open_or_prepare_s": round(open_s, 2),
            "images_per_second": round(args.batches * args.batch_size / seconds),
        }), flush=True)


if __name__ == "__main__":
    main()
