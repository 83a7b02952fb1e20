"""Temperature scaling applied at predict time: ``p_T = softmax(log p / T)``.

``T`` is fitted on out-of-fold predictions by :mod:`autoseg.evaluation.calibration`; this module
only applies it. The argmax, hence every mask, is unchanged.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.2], [0.1, 0.8]])
    >>> apply_temperature(probs, 1.0).round(3).tolist()
    [[0.9, 0.2], [0.1, 0.8]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["EPS", "apply_temperature"]

#: Probabilities are clipped to ``[EPS, 1]`` before the logarithm.
EPS = 1e-7


def apply_temperature(probabilities: np.ndarray, temperature: float, axis: int = 0) -> np.ndarray:
    """``softmax(log p / T)`` along ``axis`` (the classes), float32; the argmax is unchanged."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = np.log(np.clip(probabilities.astype(np.float32), EPS, 1.0)) / np.float32(temperature)
    logits -= logits.max(axis=axis, keepdims=True)
    out = np.exp(logits)
    out /= out.sum(axis=axis, keepdims=True)
    return out.astype(np.float32)
