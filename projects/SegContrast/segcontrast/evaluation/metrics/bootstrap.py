"""Bootstrap confidence intervals: the one implementation, for the loss study and ``--compare``.

Every interval is a percentile interval (2.5th and 97.5th percentile of the resampled
statistic) from a seeded ``numpy.random.Generator``, so the same seed gives the same numbers.
Images are the resampled unit: a resample draws as many images as there are, with replacement.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DEFAULT_SAMPLES",
    "bootstrap_mean_ci",
    "paired_seed_image_ci",
    "percentile_ci",
    "resample_weights",
]

DEFAULT_SAMPLES = 1000
_LOW, _HIGH = 2.5, 97.5


def percentile_ci(statistics: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of resampled statistics (non-finite ones left out).

    Args:
        statistics: (B,) the statistic on each resample.

    Returns:
        ``(low, high)``; NaN, NaN when no resample gave a finite value.
    """
    values = np.asarray(statistics, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    return float(np.percentile(values, _LOW)), float(np.percentile(values, _HIGH))


def bootstrap_mean_ci(values: np.ndarray, rng: np.random.Generator,
                      samples: int = DEFAULT_SAMPLES) -> tuple[float, float]:
    """95% interval of the mean of ``values`` (non-finite values left out first).

    Args:
        values: (N,) one number per image.
        rng: the random generator (consumed: ``samples * N`` integers).
        samples: resamples.

    Returns:
        ``(low, high)``; NaN, NaN without a finite value.
    """
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    draws = rng.integers(0, values.size, size=(samples, values.size))
    return percentile_ci(values[draws].mean(axis=1))


def paired_seed_image_ci(variant: np.ndarray, base: np.ndarray, rng: np.random.Generator,
                         samples: int = DEFAULT_SAMPLES) -> tuple[float, float]:
    """95% interval of the mean per-image difference, resampling seeds *and* images.

    Resampling images alone treats one training run as the truth and ignores how much a run
    changes with its seed; here every resample also draws each side's seeds with replacement.
    Images without a finite score on every seed of both sides are left out.

    Args:
        variant: (images, seeds) per-image scores of a variant.
        base: (images, seeds') per-image scores of the baseline, same images in the same order.
        rng: the random generator.
        samples: resamples.

    Returns:
        ``(low, high)``; NaN, NaN when no image is left.
    """
    keep = np.isfinite(variant).all(axis=1) & np.isfinite(base).all(axis=1)
    variant, base = variant[keep], base[keep]
    if variant.shape[0] == 0:
        return math.nan, math.nan
    n = variant.shape[0]
    means = np.empty(samples)
    for b in range(samples):
        images = rng.integers(0, n, size=n)
        seeds_v = rng.integers(0, variant.shape[1], size=variant.shape[1])
        seeds_b = rng.integers(0, base.shape[1], size=base.shape[1])
        means[b] = (variant[np.ix_(images, seeds_v)].mean()
                    - base[np.ix_(images, seeds_b)].mean())
    return percentile_ci(means)


def resample_weights(num_items: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each item is drawn in each resample (draws with replacement).

    A statistic that is a sum over images becomes ``weights @ per_image`` for all resamples at
    once; two models scored with the same weights give a paired bootstrap.

    Args:
        num_items: N.
        samples: B.
        rng: the random generator.

    Returns:
        (B, N) int64 counts; each row sums to N.
    """
    if num_items == 0:
        return np.zeros((samples, 0), np.int64)
    draws = rng.integers(0, num_items, size=(samples, num_items))
    flat = (np.arange(samples)[:, None] * num_items + draws).ravel()
    return np.bincount(flat, minlength=samples * num_items).reshape(samples, num_items)
