"""fool-screen's statistics: how well D's realness scores separate real images from a group."""

from __future__ import annotations

import math

import numpy as np


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half: the Mann-Whitney U statistic
    over (n_pos x n_neg). 1 = every positive above every negative, 0.5 = chance (or all tied).

    By ranks: U = (sum of the positives' ranks in the pooled sample) - n_pos (n_pos + 1) / 2,
    each group of tied scores taking the mean of the ranks it spans."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs at least one positive and one negative score")
    pooled = np.concatenate([pos, neg])  # (n_pos + n_neg,)
    _, inverse, counts = np.unique(pooled, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    mean_rank = ends - (counts - 1) / 2.0  # the mean of ranks ends-counts+1 .. ends
    ranks = mean_rank[inverse]
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def threshold_keeping(real: np.ndarray, keep: float) -> float:
    """The highest score t with mean(real >= t) >= keep: the k-th smallest real score (0-based
    k = floor(n (1 - keep)), the 5th percentile for keep 0.95). Accepted: score >= t."""
    scores = np.sort(np.asarray(real, np.float64))
    k = math.floor(len(scores) * (1.0 - keep) + 1e-9)  # 1e-9: 1000 x 0.05 is 50.0000000001
    return float(scores[min(k, len(scores) - 1)])


def rejected_share(scores: np.ndarray, threshold: float) -> float:
    """The share of images scored below the threshold (rejected by the screen)."""
    return float(np.mean(np.asarray(scores, np.float64) < threshold))
