"""Evaluating a classifier: during training, and later from a workdir alone.

`evaluate_state` runs the jitted eval step over a split (sharded like training) and returns
top-1, top-5, loss, per-class accuracy and the confusion matrix. `load_trained` rebuilds a
trained network from its workdir (config + checkpoint); `evaluate_workdir` and `classify_images`
are `realsys evaluate` and `realsys classify`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from realsys_cli.classifier.augment import PixelStats
from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.classifier.setup import DataFacts, make_model, make_steps
from realsys_cli.classifier.steps import ClassifierSteps, init_state
from realsys_cli.data import pipeline
from realsys_cli.data.dataset import open_dataset
from realsys_cli.data.folder import load_rgb
from realsys_cli.errors import CheckpointError, InputImageError
from realsys_cli.training import distributed
from realsys_cli.training.run import load_run

log = logging.getLogger("realsys")


def evaluate_state(eval_step: Any, params: Any, rest: Any, source: Sequence, *,
                   batch_size: int, resize_size: int, mesh: Any, channels: int | None = None,
                   limit: int | None = None) -> dict[str, Any]:
    """`channels`: the model's; images of another channel count are converted to it."""
    shard = distributed.process_shard()
    local = batch_size // jax.process_count()
    totals = None
    for batch in pipeline.eval_batches(source, batch_size=local, image_size=resize_size,
                                       channels=channels, shard=shard, limit=limit):
        sums = eval_step(params, rest, distributed.shard_batch(batch, mesh))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = distributed.to_host(totals)
    count = float(totals["count"])
    confusion = totals["confusion"].astype(np.int64)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {
        "accuracy": float(totals["top1"]) / count,
        "top5_accuracy": float(totals["top5"]) / count,
        "loss": float(totals["loss"]) / count,
        "count": int(count),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
    }


@dataclasses.dataclass
class TrainedClassifier:
    """A classifier rebuilt from its workdir: config, data facts, steps and weights."""

    workdir: Path
    cfg: ClassifierConfig
    facts: DataFacts
    steps: ClassifierSteps
    state: dict[str, Any]
    step: int
    checkpoint: str  # "best" or "latest"

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.facts.class_names

    def model(self) -> Any:
        """The NNX module with the trained weights (for attacks and feature extraction)."""
        from flax import nnx

        return nnx.merge(self.steps.graphdef, self.state["params"], self.state["rest"])

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, R, R, C) at the loader's size -> probabilities (N, K)."""
        predict = self.steps.make_predict()
        out = [np.asarray(predict(self.state["params"], self.state["rest"],
                                  images[i : i + batch_size]))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out)


def load_trained(workdir: str | Path, *, best: bool = True) -> TrainedClassifier:
    """The classifier in `workdir`: its best checkpoint (highest validation accuracy) when it
    has one and `best`, else the latest."""

    def build(cfg: ClassifierConfig, meta: dict[str, Any]) -> tuple[ClassifierSteps, Any]:
        facts = DataFacts.from_dict(meta["facts"])
        # Shapes only: initialising the weights for real would compile one XLA program per
        # initializer shape (~5 s for alexnet-small on 2 busy cores) just to be overwritten.
        model = nnx.eval_shape(lambda: make_model(cfg, facts))
        steps = make_steps(cfg, facts, model, PixelStats.from_dict(meta["stats"]),
                           total_steps=1)
        return steps, jax.eval_shape(lambda: init_state(make_model(cfg, facts), steps.tx,
                                                        cfg.seed))

    run = load_run(workdir, ClassifierConfig, command="classifier",
                   markers=("model", "dataset", "resize_size"), build=build,
                   prefer="best" if best else "latest")
    return TrainedClassifier(run.workdir, run.cfg, DataFacts.from_dict(run.meta["facts"]),
                             run.steps, run.state, run.step, run.checkpoint)


def evaluate_workdir(workdir: str | Path, *, dataset: str | None = None,
                     split: str | None = None, data_dir: str | None = None,
                     tfds_dir: str | None = None, ten_crop: bool | None = None,
                     batch_size: int = 256) -> dict[str, Any]:
    trained = load_trained(workdir)
    if ten_crop is not None:
        trained.steps = dataclasses.replace(trained.steps, ten_crop=ten_crop)
    name = dataset or trained.cfg.dataset
    data = open_dataset(name, data_dir=data_dir or (trained.cfg.data_dir if dataset is None
                                                    else None),
                        tfds_dir=tfds_dir or trained.cfg.tfds_data_dir)
    if data.class_names and tuple(data.class_names) != trained.class_names:
        raise CheckpointError(  # a folder is named by its path: its label is the model's
            f"{data_dir or name} has classes {', '.join(data.class_names[:5])}...; the model in "
            f"{workdir} was trained on {', '.join(trained.class_names[:5])}...: evaluate it on "
            "data of the same classes"
        )
    split = split or data.eval_split
    mesh = distributed.data_mesh()
    batch_size -= batch_size % jax.device_count()
    result = evaluate_state(trained.steps.make_eval_step(), trained.state["params"],
                            trained.state["rest"], data.source(split), batch_size=batch_size,
                            resize_size=trained.facts.resize_size, mesh=mesh,
                            channels=trained.facts.in_channels)
    per_class = {n: round(a, 4) for n, a in zip(trained.class_names,
                                                result["per_class_accuracy"])}
    return {"workdir": str(workdir), "checkpoint": trained.checkpoint, "step": trained.step,
            "dataset": name, "split": split, "examples": result["count"],
            "accuracy": result["accuracy"], "top5_accuracy": result["top5_accuracy"],
            "loss": result["loss"], "per_class_accuracy": per_class,
            "confusion": result["confusion"]}


def read_image(path: str | Path, channels: int, size: int) -> np.ndarray:
    """An image file as uint8 (size, size, channels), or an InputImageError naming it.

    Any file becomes 8-bit RGB first (grey, palette, CMYK, 16-bit, alpha); a 1-channel model
    gets its luma, as the input pipeline converts (`pipeline.convert_channels`).
    """
    path = Path(path)
    if path.is_dir():
        raise InputImageError(f"image {path} is a folder; give the image files in it")
    if not path.is_file():
        raise InputImageError(f"image {path} does not exist")
    try:
        rgb = load_rgb(path)
    except Exception as e:  # PIL raises many types for corrupt files
        raise InputImageError(f"cannot read image {path}: it is damaged or not an image "
                              f"({type(e).__name__})") from None
    return pipeline.convert_channels(pipeline.resize_square(np.asarray(rgb), size), channels)


def classify_images(workdir: str | Path, paths: Sequence[str], *,
                    top: int = 5) -> list[dict[str, Any]]:
    trained = load_trained(workdir)
    if not paths:
        raise InputImageError("no images given (pass paths, or - to read them from stdin)")
    images = np.stack([read_image(p, trained.facts.in_channels, trained.facts.resize_size)
                       for p in paths])
    probs = trained.predict(images)
    top = min(top, probs.shape[1])
    rows = []
    for path, p in zip(paths, probs):
        order = np.argsort(-p)[:top]
        rows.append({"image": str(path),
                     "top": [{"label": trained.class_names[i], "index": int(i),
                              "probability": round(float(p[i]), 6)} for i in order]})
    return rows

