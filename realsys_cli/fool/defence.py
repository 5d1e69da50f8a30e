"""`realsys fool-defence`: does a "fooling images" class make a network harder to fool?

Nguyen, Yosinski, Clune (CVPR 2015, section 3.4) tried the obvious defence: take the fooling
images made against network DNN_1, add them to the training set as an extra class, train DNN_2,
then evolve new fooling images against DNN_2, and repeat. On MNIST new fooling images were still
found, with high confidence, after many rounds; on ImageNet the median confidence of the new
ones fell (recalled: 88.1% -> 11.7%).

Round 0 fools the original classifier. Round r >= 1 trains a classifier from scratch (the
original recipe, `retrain_epochs` epochs) on the original training data plus every fooling image
made so far, labelled "fooling" (repeated to `fooling_fraction` x the mean class size), then fools
it again for the original classes. Reported per round: the median target confidence of the new
fooling images, their success rate, the probability the network gives them for "fooling", the
share of the previous round's images it calls "fooling" (did it learn the class at all?) and
its accuracy on the original test split. Each round's classifier and images
stay in `out/round<r>/`; rerunning with the same `out` reuses finished rounds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realsys_cli.config import config_to_dict
from realsys_cli.data.dataset import Dataset, RecordView, open_dataset
from realsys_cli.errors import ConfigError
from realsys_cli.fool import report
from realsys_cli.fool.config import DefenceConfig, FoolConfig
from realsys_cli.fool.result import Fooled, passes
from realsys_cli.fool.run import attack
from realsys_cli.fool.target import FrozenClassifier, load_frozen
from realsys_cli.outputs import check_creatable
from realsys_cli.progress import SILENT, Progress

log = logging.getLogger("realsys")


class WithExtraRecords(Sequence):
    """A training split followed by `count` records cycling through in-memory `images`."""

    def __init__(self, base: RecordView, images: np.ndarray, label: int, count: int) -> None:
        self._base, self._images, self._label, self._count = base, images, label, count

    def __len__(self) -> int:
        return len(self._base) + self._count

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        n = len(self._base)
        if index < n:
            return self._base[index]
        if index >= len(self):
            raise IndexError(index)
        return {"image": self._images[(index - n) % len(self._images)], "label": self._label}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self[int(i)] for i in indices]


@dataclasses.dataclass
class WithFoolingClass(Dataset):
    """A dataset with one more class whose training examples are generated images."""

    extra_images: np.ndarray | None = dataclasses.field(default=None, repr=False)
    extra_count: int = 0

    def source(self, split: str) -> Any:
        base = super().source(split)
        if split != self.train_split or self.extra_images is None:
            return base
        return WithExtraRecords(base, self.extra_images, len(self.class_names) - 1,
                                self.extra_count)


def with_fooling_class(dataset: Dataset, images: np.ndarray, name: str,
                       fraction: float) -> WithFoolingClass:
    if name in dataset.class_names:
        raise ConfigError(f"{dataset.name} already has a class named {name!r}; "
                          "--set fooling_class_name=...")
    train = dataset.train_split
    count = max(1, round(fraction * dataset.splits[train] / dataset.num_classes))
    fields = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(Dataset)}
    fields.update(class_names=(*dataset.class_names, name),
                  splits=dict(dataset.splits, **{train: dataset.splits[train] + count}))
    return WithFoolingClass(**fields, extra_images=images, extra_count=count)


def _round_summary(r: int, net: FrozenClassifier, fooled: Fooled, cfg: FoolConfig,
                   pool: list[np.ndarray], fooling_index: int | None,
                   trained: dict[str, Any] | None) -> dict[str, Any]:
    probs = net.predict(fooled.images)
    fooling_p = probs[:, fooling_index] if fooling_index is not None else None
    # did the retraining learn the class at all? the last round's images, as it sees them
    caught = (float(np.mean(net.predict(pool[-1]).argmax(-1) == fooling_index))
              if fooling_index is not None and pool else None)
    return {
        "round": r,
        "classes": net.num_classes,
        "fooling_train_images": sum(len(p) for p in pool),
        "previous_images_called_fooling": caught,
        "median_confidence": float(np.median(fooled.confidences)),
        "success_rate": float(np.mean(passes(fooled.confidences, cfg.confidence))),
        "median_fooling_probability": (float(np.median(fooling_p)) if fooling_p is not None
                                       else None),
        "eval_accuracy": trained["eval_accuracy"] if trained else None,
        "images": len(fooled),
    }


def run_defence(cfg: FoolConfig, dcfg: DefenceConfig, workdir: str | Path, out: str | Path,
                *, announce: str | None = None, progress: Progress = SILENT) -> dict[str, Any]:
    from realsys_cli.classifier.evaluate import load_trained
    from realsys_cli.classifier.train import train_and_evaluate

    t0 = time.perf_counter()
    out = check_creatable(out, option="--workdir", folder=True)  # not after round 0's attack
    base = load_trained(workdir)
    base_cfg = base.cfg
    num_classes = len(base.class_names)
    targets = list(range(num_classes))  # the original classes, never "fooling"
    net: FrozenClassifier = load_frozen(workdir)
    if announce:
        log.info("%s", announce)
    log.info("defence: %d round(s) against %s -> %s", dcfg.rounds, workdir, out)
    pool: list[np.ndarray] = []
    rounds: list[dict[str, Any]] = []
    for r in range(dcfg.rounds + 1):
        round_dir = out / f"round{r}"
        trained = None
        if r > 0:  # ------------------------------------ retrain with the fooling class
            classifier_dir = round_dir / "classifier"
            result_path = classifier_dir / "result.json"
            if result_path.exists():
                trained = json.loads(result_path.read_text())
                log.info("round %d: reusing the classifier in %s", r, classifier_dir)
            else:
                data = open_dataset(base_cfg.dataset, data_dir=base_cfg.data_dir,
                                    tfds_dir=cfg.tfds_data_dir or base_cfg.tfds_data_dir)
                data = with_fooling_class(data, np.concatenate(pool), dcfg.fooling_class_name,
                                          dcfg.fooling_fraction)
                retrain = dataclasses.replace(base_cfg, num_epochs=dcfg.retrain_epochs,
                                              max_steps=0, seed=base_cfg.seed + r)
                log.info("round %d: training on %s + %d fooling images (%d examples)", r,
                         base_cfg.dataset, sum(len(p) for p in pool), data.extra_count)
                trained = train_and_evaluate(retrain, classifier_dir, progress=progress,
                                             dataset=data)
            net = load_frozen(classifier_dir)
        # ----------------------------------------------------------- fool this round's net
        saved = round_dir / "images.npz"
        if saved.exists() and (round_dir / "round.json").exists():
            fooled_images = np.load(saved)["images"]
            rounds.append(json.loads((round_dir / "round.json").read_text()))
            pool.append(fooled_images)
            log.info("round %d: reusing %d fooling images", r, len(fooled_images))
            continue
        fooled = attack(net, dataclasses.replace(cfg, seed=cfg.seed + 1000 * r), targets,
                        progress=progress)
        report.save_images(round_dir, fooled, net.class_names)
        report.save_sheet(round_dir / "sheet.png", fooled, net.class_names)
        summary = _round_summary(r, net, fooled, cfg, pool, num_classes if r > 0 else None,
                                 trained)
        if fooled.interrupted:
            raise KeyboardInterrupt
        (round_dir / "round.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("round %d: median confidence %.4f, success %.3f", r,
                 summary["median_confidence"], summary["success_rate"])
        rounds.append(summary)
        pool.append(fooled.images)

    result = {
        "method": cfg.method,
        "encoding": cfg.encoding if cfg.method == "evolve" else None,
        "checkpoint": str(workdir),
        "rounds_run": dcfg.rounds,
        "median_confidence_per_round": [r["median_confidence"] for r in rounds],
        "success_rate_per_round": [r["success_rate"] for r in rounds],
        "out": str(out),
        "seconds": round(time.perf_counter() - t0, 2),
        "rounds": rounds,
        "config": {"fool": config_to_dict(cfg), "defence": config_to_dict(dcfg)},
    }
    report.write_report(out, result)
    return result
