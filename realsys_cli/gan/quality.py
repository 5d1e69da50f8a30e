"""The quality report of a generator: FID, its real-vs-real floor, and class coverage.

Built once per run: N real training images (N = fid_samples, at most half the training split)
and N others, disjoint from them, go through the judge; the first set is the reference every FID
is measured against, and the FID between the two is the floor. A generator is then scored on
N samples from a fixed z (the same at every epoch, so the curve is not noise from z).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from realsys_cli.data.pipeline import resize_square
from realsys_cli.gan import fid as fid_lib
from realsys_cli.gan.judge import Judge

_GENERATE_BATCH = 500


@dataclasses.dataclass
class QualityMeter:
    judge: Judge
    reference: fid_lib.FeatureStats  # real set A
    floor: float  # FID(real A, real B)
    num_samples: int  # N: real A, real B and generated sets all have N images
    real_confident_fraction: float  # the judge's confidence on real images, for comparison

    @classmethod
    def build(cls, judge: Judge, source: Sequence, *, image_size: int, num_samples: int,
              seed: int) -> QualityMeter:
        n = min(num_samples, len(source) // 2)
        if n < 2:
            raise ValueError(f"need at least 4 training images for FID, got {len(source)}")
        order = np.random.default_rng(seed).permutation(len(source))[: 2 * n]
        images = np.stack([resize_square(source[int(i)]["image"], image_size) for i in order])
        feats, probs = judge.features_and_probs(images)  # (2N, D), (2N, K)
        reference = fid_lib.FeatureStats.of(feats[:n])
        floor = fid_lib.frechet_distance(reference, fid_lib.FeatureStats.of(feats[n:]))
        return cls(judge, reference, floor, n, fid_lib.confident_fraction(probs[:n]))

    def measure(self, images: np.ndarray) -> dict[str, Any]:
        """uint8 (N, S, S, C) generated images -> fid, class_coverage, confident_fraction."""
        feats, probs = self.judge.features_and_probs(images)
        coverage = fid_lib.class_coverage(probs, self.judge.class_names)
        return {
            "fid": fid_lib.frechet_distance(self.reference, fid_lib.FeatureStats.of(feats)),
            "class_coverage": coverage,
            "min_class_share": min(coverage.values()),
            "confident_fraction": fid_lib.confident_fraction(probs),
        }

    def declared(self) -> dict[str, Any]:
        """The fields every report carries next to the numbers: extractor and sample counts."""
        return {"fid_real_floor": self.floor, "num_samples": self.num_samples,
                "num_real_samples": self.num_samples,
                "real_confident_fraction": self.real_confident_fraction,
                "judge": self.judge.describe()}


def fixed_z(sample_z: Callable[[jax.Array, int], jax.Array], seed: int, n: int,
            stream: int) -> jax.Array:
    """A z that depends on the seed and a stream number only (grids: 1, FID samples: 2)."""
    return sample_z(jax.random.fold_in(jax.random.key(seed), 1_000_000 + stream), n)


def generate(sampler: Callable, g_params: Any, g_rest: Any, z: jax.Array) -> np.ndarray:
    """uint8 (N, S, S, C) images for z (N, nz), in fixed-size batches (one compiled shape)."""
    n = len(z)
    size = min(_GENERATE_BATCH, n)
    out = []
    for i in range(0, n, size):
        chunk = z[i : i + size]
        m = len(chunk)
        if m < size:
            chunk = jax.numpy.concatenate([chunk, jax.numpy.repeat(chunk[-1:], size - m, 0)])
        out.append(np.asarray(sampler(g_params, g_rest, chunk))[:m])
    return np.concatenate(out)
