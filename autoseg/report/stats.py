"""Statistics of the report: bootstrap confidence intervals of a mean and a paired Wilcoxon test.

Example:
    >>> mean, low, high = bootstrap_ci([0.81, 0.86, 0.9, 0.77, 0.88])
    >>> low <= mean <= high
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_ci", "paired_wilcoxon"]


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile-bootstrap confidence interval over ``n`` cases."""

    mean: float
    low: float
    high: float
    n: int

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.mean, self.low, self.high))

    def text(self, digits: int = 3) -> str:
        """``0.912 [0.880, 0.934]`` (``-`` without cases)."""
        if self.n == 0 or math.isnan(self.mean):
            return "-"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_ci(
    values: Sequence[float | None], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """The mean of ``values`` (None skipped) and its percentile-bootstrap ``level`` interval.

    Cases are resampled with replacement ``resamples`` times (a fixed seed: the same numbers
    give the same interval). One case gives a zero-width interval; none gives NaNs.

    Example:
        >>> bootstrap_ci([1.0, 1.0, 1.0]).text()
        '1.000 [1.000, 1.000]'
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    data = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    mean = float(data.mean())
    return Interval(mean, min(float(low), mean), max(float(high), mean), int(data.size))


def paired_wilcoxon(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[float | None, int]:
    """Two-sided Wilcoxon signed-rank p-value of paired values (pairs with a None dropped).

    Returns:
        (p-value or None when there are fewer than 2 pairs or every difference is 0, pairs used).
    """
    from scipy.stats import wilcoxon

    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    pairs = [
        (float(x), float(y))
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and not (math.isnan(x) or math.isnan(y))
    ]
    diffs = [x - y for x, y in pairs]
    if len(pairs) < 2 or not any(diffs):
        return None, len(pairs)
    return float(wilcoxon(diffs).pvalue), len(pairs)
