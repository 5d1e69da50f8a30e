"""The network under attack: a trained classifier, frozen, as a pure function of pixels.

Every attack works in pixel space, images (B, S, S, C) in [0, 1] at the model's input side S,
and goes through the classifier's own input normalisation `(x - mean) / std` inside the jitted
function, so the gradients and the confidences are those of the network a user trained. The
weights are an argument of the jitted functions (not constants folded into the program).

Images are scored after rounding to the uint8 grid (a straight-through estimator keeps the
gradient), so the confidence an attack records is exactly that of the PNG it saves.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.classifier.augment import PixelStats, normalize
from realsys_cli.errors import CheckpointError, ConfigError

log = logging.getLogger("realsys")


def quantise(x: jax.Array) -> jax.Array:
    """Round [0, 1] pixels to the uint8 grid; the gradient passes straight through."""
    return x + jax.lax.stop_gradient(jnp.round(x * 255.0) / 255.0 - x)


@dataclasses.dataclass(frozen=True)
class FrozenClassifier:
    """A trained classifier's graph, weights and input facts."""

    workdir: Path
    graphdef: Any
    weights: tuple[Any, Any]  # (params, rest) nnx.State pair
    stats: PixelStats
    class_names: tuple[str, ...]
    image_size: int  # model input side S (attacks make S x S images)
    resize_size: int  # the loader's side R >= S (real images are centre-cropped to S)
    in_channels: int
    checkpoint: str  # "best" or "latest"
    dataset: str = ""  # what it was trained on (perturb draws real images from its eval split)
    data_dir: str | None = None
    tfds_data_dir: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.in_channels)

    def logits(self, weights: tuple[Any, Any], x: jax.Array) -> jax.Array:
        """(B, S, S, C) pixels in [0, 1] -> logits (B, K) float32. Call inside jit."""
        model = nnx.merge(self.graphdef, *weights, copy=True)
        return model(normalize(x, self.stats), train=False)

    def to_device(self, tree: Any) -> Any:
        """Commit arrays to the weights' device: a jitted step then sees the same placement on
        its first call as on later ones (its own outputs), and compiles once, not twice."""
        return jax.device_put(tree, jax.tree.leaves(self.weights)[0].sharding)

    def make_probs(self) -> Any:
        """A jitted (weights, uint8 images (B, S, S, C)) -> softmax (B, K)."""
        def probs(weights: Any, images: jax.Array) -> jax.Array:
            return jax.nn.softmax(self.logits(weights, images.astype(jnp.float32) / 255.0))

        return jax.jit(probs)

    def predict(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """uint8 (N, S, S, C) -> probabilities (N, K), in batches."""
        probs = self.make_probs()
        return np.concatenate([np.asarray(probs(self.weights, images[i : i + batch_size]))
                               for i in range(0, len(images), batch_size)]) \
            if len(images) else np.zeros((0, self.num_classes), np.float32)


def load_frozen(workdir: str | Path) -> FrozenClassifier:
    """Rebuild the trained classifier of a train-classifier workdir (best checkpoint if any)."""
    from realsys_cli.classifier.evaluate import load_trained

    trained = load_trained(workdir)
    # One plain device: the checkpoint comes back laid out on the training mesh, and arrays
    # with mixed layouts would make jit compile the same attack step twice.
    weights = jax.device_put((trained.state["params"], trained.state["rest"]), jax.devices()[0])
    return FrozenClassifier(
        workdir=Path(workdir), graphdef=trained.steps.graphdef,
        weights=weights, stats=trained.steps.stats,
        class_names=trained.class_names, image_size=trained.facts.image_size,
        resize_size=trained.facts.resize_size, in_channels=trained.facts.in_channels,
        checkpoint=trained.checkpoint, dataset=trained.cfg.dataset,
        data_dir=trained.cfg.data_dir, tfds_data_dir=trained.cfg.tfds_data_dir)


def _has_checkpoint(run: Path) -> bool:
    return any(p.name.isdigit() for sub in ("best", "checkpoints") if (run / sub).is_dir()
               for p in (run / sub).iterdir())


def latest_classifier_run(runs_dir: Path) -> Path:
    """The most recently modified runs/train-classifier-* with a config and a checkpoint."""
    candidates = [p for p in runs_dir.glob("train-classifier-*")
                  if p.is_dir() and (p / "config.json").is_file() and _has_checkpoint(p)]
    if not candidates:
        raise CheckpointError(
            f"no trained classifier found under {runs_dir}; train one first "
            "(`realsys train-classifier`) or pass --classifier"
        )
    return max(candidates, key=lambda p: (p / "config.json").stat().st_mtime)


def resolve_targets(names: Sequence[str], class_names: Sequence[str], *,
                    all_classes: bool) -> list[int]:
    """`["9", "parachute"]` -> class indices; a class name wins over an index of the same text."""
    if all_classes or not names:
        return list(range(len(class_names)))
    out = []
    for name in names:
        text = str(name).strip()
        if text in class_names:
            out.append(list(class_names).index(text))
        elif text.lstrip("-").isdigit() and 0 <= int(text) < len(class_names):
            out.append(int(text))
        else:
            shown = ", ".join(f"{i} {n}" for i, n in enumerate(class_names))
            raise ConfigError(f"unknown target class {text!r}; valid classes: {shown}")
    return list(dict.fromkeys(out))  # in order, without repeats


def fit_images(images: np.ndarray, side: int, channels: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, side, side, channels): for checking with another network."""
    from realsys_cli.data.pipeline import convert_channels, resize_square

    images = convert_channels(images, channels)  # grey <-> RGB as the input pipeline does
    if images.shape[1] == side:
        return images
    return np.stack([resize_square(im, side) for im in images])
