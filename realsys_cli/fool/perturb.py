"""`--method perturb`: targeted perturbations of real test images (PGD; FGSM as 1 step).

Madry et al. 2017's projected gradient descent, targeted: start at a random point of the
L-infinity ball of radius epsilon around a real image x0 of another class, then repeat

    x <- x - alpha * sign(d CE(logits(q(x)), target) / dx)     (cross-entropy of the LOGITS)
    x <- clip(x, x0 - epsilon, x0 + epsilon), clip(x, 0, 1)

with alpha = 2.5 epsilon / steps by default. With one step and no random start this is
Goodfellow et al. 2014's FGSM (alpha = epsilon). Szegedy et al. 2013 first showed such
imperceptible changes; Nguyen et al. 2015 is the opposite end (unrecognisable images).

The ball is taken on the uint8 grid (epsilon rounded down to whole grey levels), so the saved
images are within epsilon of the originals exactly. Success = the target is the argmax.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli.fool.config import FoolConfig
from realsys_cli.fool.result import NEVER, Fooled, milestones, record
from realsys_cli.fool.target import FrozenClassifier, quantise
from realsys_cli.pictures import to_uint8
from realsys_cli.progress import SILENT, Progress

log = logging.getLogger("realsys")


def make_pgd_step(net: FrozenClassifier, cfg: FoolConfig) -> Callable:
    """jit((weights, state, t) -> state); state = {x, x0, targets, reached, key}."""
    eps = np.floor(cfg.epsilon * 255.0 + 1e-6) / 255.0  # whole grey levels
    fgsm = cfg.pgd_steps == 1
    alpha = cfg.pgd_step_size or (eps if fgsm else 2.5 * eps / cfg.pgd_steps)
    total = cfg.pgd_steps

    def step(weights: Any, state: dict[str, jax.Array], t: jax.Array) -> dict[str, jax.Array]:
        x, x0, targets = state["x"], state["x0"], state["targets"]

        def loss(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            logits = net.logits(weights, quantise(x))  # (B, K)
            ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], 1)
            return jnp.sum(ce), logits

        (_, logits), grad = jax.value_and_grad(loss, has_aux=True)(x)
        reached = record(state["reached"], milestones(jax.nn.softmax(logits), targets), t)
        new = jnp.clip(jnp.clip(x - alpha * jnp.sign(grad), x0 - eps, x0 + eps), 0.0, 1.0)
        x = jnp.where(t < total, new, x)
        return dict(state, x=x, reached=reached)

    # No buffer donation: the state is a few small images, and donating it (x0 and the
    # targets pass through unchanged) crashed XLA:CPU with a segmentation fault under pytest's
    # 4 fake devices (jax 0.10.2); without donation the same step runs fine.
    return jax.jit(step), eps


def pick_sources(labels: np.ndarray, targets: np.ndarray, seed: int) -> np.ndarray:
    """For each target, the index of a distinct test image whose true label is another class."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    used: set[int] = set()
    out = []
    cursor = {t: 0 for t in set(targets.tolist())}
    for t in targets.tolist():
        i = cursor[t]
        while i < len(order) and (labels[order[i]] == t or order[i] in used):
            i += 1
        if i == len(order):  # fewer test images than attacks: allow reuse
            i = next(j for j in range(len(order)) if labels[order[j]] != t)
        cursor[t] = i + 1
        used.add(int(order[i]))
        out.append(int(order[i]))
    return np.asarray(out)


def perturb(net: FrozenClassifier, targets: np.ndarray, test_images: np.ndarray,
            test_labels: np.ndarray, cfg: FoolConfig, *, progress: Progress = SILENT) -> Fooled:
    """Targeted PGD from real images (uint8 (M, S, S, C), labels (M,)) of other classes."""
    if len(set(test_labels.tolist())) < 2:
        from realsys_cli.errors import DatasetError

        raise DatasetError("perturb needs test images of at least two classes")
    step, eps = make_pgd_step(net, cfg)
    sources = pick_sources(test_labels, targets, cfg.seed)
    size = min(cfg.batch_size, len(targets))
    rng = np.random.default_rng(cfg.seed)
    parts: list[Fooled] = []
    with progress.task(f"perturb (eps {cfg.epsilon:g})", total=len(targets)) as task:
        for start in range(0, len(targets), size):
            idx = np.resize(sources[start : start + size], size)
            chunk_t = np.resize(targets[start : start + size], size)
            n = min(size, len(targets) - start)
            x0 = test_images[idx].astype(np.float32) / 255.0  # (B, S, S, C)
            x = x0
            if cfg.random_start and cfg.pgd_steps > 1:  # a random point of the ball
                x = np.clip(x0 + rng.uniform(-eps, eps, x0.shape).astype(np.float32), 0.0, 1.0)
            state = net.to_device({"x": x, "x0": x0, "targets": chunk_t.astype(np.int32),
                                   "reached": np.full((size, 4), NEVER, np.int32)})
            interrupted = False
            try:
                for t in range(cfg.pgd_steps + 1):  # the last call only scores
                    state = step(net.weights, state, jnp.asarray(t, jnp.int32))
            except KeyboardInterrupt:
                interrupted = True
            images = to_uint8(np.asarray(state["x"][:n]))
            probs = net.predict(images)
            parts.append(Fooled(
                images=images, targets=chunk_t[:n], confidences=probs[np.arange(n), chunk_t[:n]],
                predicted=probs.argmax(-1), steps=np.full((n,), cfg.pgd_steps),
                reached=np.asarray(state["reached"][:n]), unit="steps",
                sources=test_labels[idx[:n]], originals=test_images[idx[:n]],
                interrupted=interrupted))
            task.advance(n)
            if interrupted:
                break
    return Fooled.concat(parts)


def load_test_images(net: FrozenClassifier, dataset: str, *, data_dir: str | None,
                     tfds_dir: str | None, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` images of the classifier's eval split, centre-cropped to its input."""
    from realsys_cli.classifier.augment import center_crop
    from realsys_cli.data.dataset import open_dataset
    from realsys_cli.data.pipeline import resize_square

    data = open_dataset(dataset, data_dir=data_dir, tfds_dir=tfds_dir)
    source = data.source(data.eval_split)
    n = min(limit, len(source))
    records = [source[i] for i in range(n)]
    images = np.stack([resize_square(r["image"], net.resize_size) for r in records])
    images = np.asarray(center_crop(images, net.image_size))
    if images.shape[-1] != net.in_channels:
        from realsys_cli.fool.target import fit_images

        images = fit_images(images, net.image_size, net.in_channels)
    log.info("perturbing real images from %s/%s (%d read)", dataset, data.eval_split, n)
    return images, np.asarray([r["label"] for r in records], np.int64)
