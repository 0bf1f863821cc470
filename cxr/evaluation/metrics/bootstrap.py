"""Seeded percentile bootstrap over patients, in pure numpy.

Every metric that has a confidence interval takes an image-weight matrix ``W`` (``B x N``; row
``b`` = how many times each image is drawn in resample ``b``); the point estimate is the same
code with ``W = ones((1, N))``. Matching of detections to boxes happens inside one image, so it
does not change under resampling; only counts are re-weighted. This keeps 1,000 resamples
vectorized.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

__all__ = ["bootstrap_weights", "percentile_ci"]


def bootstrap_weights(groups: Sequence | np.ndarray, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Image weights of a seeded percentile bootstrap that resamples patients.

    Rule: each resample draws as many units as there are distinct ``groups`` (patients; pass
    image indices when patient ids are unknown), uniformly with replacement, with
    ``numpy.random.default_rng(seed)``; an image's weight is the number of times its unit was
    drawn. The same seed gives the same weights.

    Args:
        groups: (N,) unit id of each image (any hashable values).
        n_resamples: B.

    Returns:
        (B, N) float64 weights.
    """
    _, unit = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    P = int(unit.max()) + 1 if len(unit) else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, max(P, 1), size=(n_resamples, P))
    counts = np.bincount(
        (draws + P * np.arange(n_resamples)[:, None]).ravel(), minlength=n_resamples * P
    ).reshape(n_resamples, P)
    return counts[:, unit].astype(np.float64)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> np.ndarray:
    """Percentile interval of bootstrap ``samples`` along axis 0, NaN resamples ignored.

    Returns:
        (2, ...) lower and upper bounds (linear interpolation between order statistics, numpy's
        default); NaN where every resample is NaN.
    """
    a = (1 - level) / 2 * 100
    s = np.asarray(samples, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as documented
        return np.nanpercentile(s, [a, 100 - a], axis=0)
