"""The judge: a realsys classifier trained on the GAN's dataset, whose features FID is computed on.

`--judge WORKDIR` names a `train-classifier` run; without it the judge is trained first, with
realsys's own classifier trainer (classifier.train.train_and_evaluate), into <workdir>/judge
(once: a resumed or repeated run finds it there). The extractor is the classifier's
penultimate layer (`model.features(x)`: 256 numbers for LeNet), from its best checkpoint, on
images normalised exactly as it was trained on them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.classifier.augment import eval_views
from realsys_cli.classifier.evaluate import TrainedClassifier, load_trained
from realsys_cli.data.pipeline import resize_square
from realsys_cli.errors import CheckpointError
from realsys_cli.progress import SILENT, Progress

log = logging.getLogger("realsys")

_BATCH = 500  # images per call of the jitted extractor (the last batch is padded)
RELIABLE_ACCURACY = 0.95  # below this test accuracy the judge's quality numbers are flagged


@dataclasses.dataclass
class Judge:
    """A trained classifier used as a fixed feature extractor and labeller."""

    trained: TrainedClassifier
    trained_here: bool  # True when train-gan trained it (and said so)
    eval_accuracy: float | None  # on the classifier run's evaluation split

    def __post_init__(self) -> None:
        steps = self.trained.steps

        def run(params: Any, rest: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
            model = nnx.merge(steps.graphdef, params, rest, copy=True)
            x = eval_views(images, steps.augment, steps.stats, False)[0]  # (B, S, S, C)
            return model.features(x), jax.nn.softmax(model(x, train=False))  # (B, D), (B, K)

        self._run = jax.jit(run)
        model = self.trained.model()
        self.feature_dim = int(model.feature_dim)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.trained.class_names

    @property
    def in_channels(self) -> int:
        return self.trained.facts.in_channels

    def describe(self) -> dict[str, Any]:
        """What the report says about the extractor: which checkpoint, which layer, and
        whether its numbers can be trusted (`reliable`, with the reason when not)."""
        t = self.trained
        return {"workdir": str(t.workdir), "model": t.cfg.model, "dataset": t.cfg.dataset,
                "checkpoint": f"{t.checkpoint} (step {t.step})",
                "layer": f"{t.cfg.model}.features: penultimate layer, {self.feature_dim} numbers",
                "eval_accuracy": self.eval_accuracy, "trained_by_train_gan": self.trained_here,
                "reliable": self.unreliable_because() is None,
                "unreliable_because": self.unreliable_because()}

    def unreliable_because(self) -> str | None:
        """Why FID, class coverage and confident fraction on this judge mean little, or None.

        A judge that cannot tell the classes apart has features that do not separate them
        either: FID on them misses what makes the classes differ, and coverage counts its own
        mistakes."""
        if self.eval_accuracy is None:
            return "the judge's test accuracy is unknown (its run has no result.json)"
        if self.eval_accuracy < RELIABLE_ACCURACY:
            return (f"the judge's test accuracy is {self.eval_accuracy:.3f}, below "
                    f"{RELIABLE_ACCURACY}: FID and class coverage on its features mean little; "
                    "give a better classifier with --judge or raise judge_epochs")
        return None

    def features_and_probs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, S, S, C) -> features (N, D) float64 and probabilities (N, K)."""
        images = self._fit(np.asarray(images))
        params, rest = self.trained.state["params"], self.trained.state["rest"]
        feats, probs = [], []
        for i in range(0, len(images), _BATCH):
            chunk = images[i : i + _BATCH]
            n = len(chunk)
            if n < _BATCH and len(images) > _BATCH:  # one compiled shape for every call
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], _BATCH - n, 0)])
            f, p = self._run(params, rest, jnp.asarray(chunk))
            feats.append(np.asarray(f, np.float64)[:n])
            probs.append(np.asarray(p, np.float64)[:n])
        return np.concatenate(feats), np.concatenate(probs)

    def _fit(self, images: np.ndarray) -> np.ndarray:
        """The judge's loader size and channels (the GAN may work at another size)."""
        if images.shape[-1] != self.in_channels:
            raise CheckpointError(
                f"the judge {self.trained.workdir} takes {self.in_channels}-channel images, the "
                f"GAN makes {images.shape[-1]}-channel ones; give a judge of the same dataset"
            )
        size = self.trained.facts.resize_size
        if images.shape[1] != size:
            images = np.stack([resize_square(im, size) for im in images])
        return images


def _accuracy(workdir: Path) -> float | None:
    path = workdir / "result.json"
    if path.exists():
        result = json.loads(path.read_text())
        return result.get("eval_accuracy", result.get("test_accuracy"))  # runs from before the rename
    return None


def load_judge(workdir: str | Path, *, trained_here: bool = False) -> Judge:
    workdir = Path(workdir)
    return Judge(load_trained(workdir), trained_here, _accuracy(workdir))


def check_classes(judge: Judge, class_names: tuple[str, ...], dataset: str) -> None:
    if class_names and tuple(judge.class_names) != tuple(class_names):
        raise CheckpointError(
            f"the judge {judge.trained.workdir} knows classes "
            f"{', '.join(judge.class_names[:5])}..., {dataset} has "
            f"{', '.join(class_names[:5])}...; give a classifier trained on {dataset}"
        )


def check_judge(judge: Judge, class_names: tuple[str, ...], channels: int,
                dataset: str) -> None:
    """The judge knows the GAN's classes and takes images of its channel count."""
    check_classes(judge, class_names, dataset)
    if judge.in_channels != channels:
        raise CheckpointError(
            f"the judge {judge.trained.workdir} takes {judge.in_channels}-channel images, "
            f"{dataset} has {channels}-channel ones; give a judge trained on {dataset}")


def given_judge(judge: str | None, class_names: tuple[str, ...], channels: int,
                dataset: str) -> Judge | None:
    """--judge WORKDIR loaded and checked, before train-gan writes anything: a bad one is
    one line and no workdir. None when no judge is given (train-gan trains one later)."""
    if judge is None:
        return None
    loaded = load_judge(judge)
    check_judge(loaded, class_names, channels, dataset)
    return loaded


def find_or_train_judge(
    *,
    judge: str | None,
    workdir: Path,
    dataset: str,
    data_dir: str | None,
    tfds_data_dir: str | None,
    image_size: int,
    model: str,
    epochs: int,
    batch_size: int,
    seed: int,
    progress: Progress = SILENT,
) -> Judge:
    """--judge WORKDIR, else <workdir>/judge, trained there first if it is not finished."""
    if judge is not None:
        return load_judge(judge)
    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.classifier.train import train_and_evaluate

    target = workdir / "judge"
    if (target / "result.json").exists():
        log.info("judge: the classifier trained earlier in %s", target)
        return load_judge(target, trained_here=True)
    log.info("no --judge given: training a %s classifier on %s into %s first (%d epoch%s); "
             "FID and class coverage are measured on its features", model, dataset, target,
             epochs, "" if epochs == 1 else "s")
    cfg = ClassifierConfig(dataset=dataset, data_dir=data_dir, tfds_data_dir=tfds_data_dir,
                           model=model, image_size=image_size, resize_size=image_size,
                           num_epochs=epochs, batch_size=batch_size, seed=seed,
                           # The judge is a measuring instrument: its recipe stays the one the
                           # README's FID numbers were measured with.
                           learning_rate=0.05, warmup_steps=100, label_smoothing=0.0)
    result = train_and_evaluate(cfg, target, progress=progress)
    log.info("judge trained in %.0f s: %s accuracy %.4f", result["train_seconds"],
             result["eval_split"], result["eval_accuracy"])
    return load_judge(target, trained_here=True)
