"""How good the samples are: FID on a judge classifier's features, and its class coverage.

Fréchet Inception Distance (Heusel et al. 2017) between two sets of feature vectors, each
summarised by its mean mu and covariance S:

    FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

Here the features are not Inception's but those of a realsys classifier trained on the same
dataset (the judge, see judge.py), so the number is only comparable with FIDs on the same
extractor and sample counts; that is why every report names the judge, its layer and both
counts, and carries the real-vs-real floor (two disjoint real sets of the same size: the FID a
perfect generator would get with this many samples) and the FID of the untrained generator.

Class coverage (mode collapse shows as missing classes): the share of samples the judge labels
as each class, and the share it labels with confidence >= 0.9.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.linalg

CONFIDENT = 0.9  # a sample is "confidently" of a class when the judge gives it >= 0.9


@dataclasses.dataclass(frozen=True)
class FeatureStats:
    """Mean (D,) and covariance (D, D) of N feature vectors, float64."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        f = np.asarray(features, dtype=np.float64)  # (N, D)
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}")
        return cls(f.mean(axis=0), np.cov(f, rowvar=False), len(f))


def frechet_distance(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """FID between two Gaussians; the matrix square root by scipy.linalg.sqrtm.

    With fewer samples than dimensions the covariances are singular and sqrtm may fail or
    return a complex result: then eps is added to both diagonals (as pytorch-fid does), and the
    imaginary part (numerical noise) is dropped.
    """
    diff = a.mean - b.mean
    with warnings.catch_warnings():  # "matrix is singular": expected, and handled here
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(a.cov @ b.cov)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(a.cov)) * eps
            covmean = scipy.linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    covmean = np.real(covmean)
    value = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))  # tiny negative values are rounding


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(FeatureStats.of(features_a), FeatureStats.of(features_b))


def class_coverage(probs: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """The share of samples the judge labels as each class (argmax), {name: share}."""
    k = len(class_names)
    counts = np.bincount(np.argmax(probs, axis=1), minlength=k)[:k]
    return {name: round(float(c) / len(probs), 4) for name, c in zip(class_names, counts)}


def confident_fraction(probs: np.ndarray, threshold: float = CONFIDENT) -> float:
    """The share of samples whose top class has probability >= threshold."""
    return float(np.mean(np.max(probs, axis=1) >= threshold))
