"""The mean of a score over what is defined: the one mean-Dice helper.

A Dice is undefined (None or NaN) where a label is absent from both prediction and reference;
every mean over cases or classes skips those values instead of counting them as 0 or 1.

Example:
    >>> mean_dice([0.5, None, float("nan"), 1.0])
    0.75
    >>> mean_dice([None]) is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["mean_dice"]


def mean_dice(values: Iterable[float | int | None]) -> float | None:
    """The mean of the defined values (numbers that are not NaN); None when there is none."""
    defined = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(defined) / len(defined) if defined else None
