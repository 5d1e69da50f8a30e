"""What every attack returns: the images and, per image, how far and how fast it got."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli.fool.config import THRESHOLDS

NEVER = -1  # a milestone that was never reached


def at_least(threshold: float) -> np.float32:
    """The smallest float32 >= threshold: a float32 probability p passes `p >= at_least(t)`
    exactly when its true value is >= t (float32(0.9999) itself is 0.99989998, below it)."""
    t = np.float32(threshold)
    return t if float(t) >= threshold else np.nextafter(t, np.float32(2.0))


def passes(confidences: np.ndarray, threshold: float) -> np.ndarray:
    """Host-side twin of `p >= at_least(t)`."""
    return np.asarray(confidences, np.float64) >= threshold


@dataclasses.dataclass
class Fooled:
    images: np.ndarray  # uint8 (N, S, S, C), exactly what is saved
    targets: np.ndarray  # (N,) int target class
    confidences: np.ndarray  # (N,) float softmax probability of the target class
    predicted: np.ndarray  # (N,) int argmax class
    steps: np.ndarray  # (N,) steps (or generations) spent on the image
    reached: np.ndarray  # (N, 4) int first step reaching THRESHOLDS; NEVER if not
    unit: str = "steps"  # "steps" or "generations"
    sources: np.ndarray | None = None  # perturb: (N,) true labels of the real images
    originals: np.ndarray | None = None  # perturb: uint8 (N, S, S, C) the real images
    interrupted: bool = False  # Ctrl-C stopped the attack early

    def __len__(self) -> int:
        return len(self.targets)

    @staticmethod
    def concat(parts: list[Fooled]) -> Fooled:
        first = parts[0]
        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else np.concatenate(values)

        return Fooled(cat("images"), cat("targets"), cat("confidences"), cat("predicted"),
                      cat("steps"), cat("reached"), first.unit, cat("sources"),
                      cat("originals"), any(p.interrupted for p in parts))


def milestones(probs: jax.Array, targets: jax.Array) -> jax.Array:
    """(B, K) softmax, (B,) targets -> (B, 4) bool: argmax hit, p >= 0.99, 0.999, 0.9999."""
    p = jnp.take_along_axis(probs, targets[:, None], axis=1)[:, 0]
    hit = jnp.argmax(probs, -1) == targets
    return jnp.stack([hit] + [p >= at_least(float(t)) for t in THRESHOLDS[1:]], axis=1)


def record(reached: jax.Array, passed: jax.Array, step: jax.Array) -> jax.Array:
    """Keep the first step at which each milestone passed: (B, 4) int32."""
    return jnp.where((reached == NEVER) & passed, step.astype(reached.dtype), reached)
