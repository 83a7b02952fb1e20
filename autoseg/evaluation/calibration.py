"""Temperature scaling of predicted probabilities, fitted on out-of-fold predictions.

A network trained with Dice + cross-entropy and averaged over folds is over-confident: among
voxels predicted with confidence 0.99, fewer than 99 % are right. One scalar ``T`` per
configuration fixes much of it: ``p_T = softmax(log p / T)`` (``T > 1`` softens). ``T`` minimises
the negative log-likelihood of the reference labels over voxels of the cross-validation
predictions (the folds' ``validation/<case>.npz``); the argmax, hence every mask, is unchanged.

The voxels are sampled (a fixed seed) inside each case's box around the reference and predicted
foreground, padded by ``PAD`` voxels: far from every structure, background is predicted with
certainty and right, and would swamp both the fit and the expected calibration error (ECE:
``sum_b |acc_b - conf_b| * n_b / n`` over ``BINS`` equal-width bins of the top-class confidence).

Example:
    >>> probs = np.array([[0.9, 0.2], [0.1, 0.8]])
    >>> from autoseg.postprocessing.temperature import apply_temperature
    >>> apply_temperature(probs, 1.0).round(3).tolist()
    [[0.9, 0.2], [0.1, 0.8]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.postprocessing.temperature import EPS as _EPS
from autoseg.postprocessing.temperature import apply_temperature

__all__ = [
    "calibrate_configuration",
    "expected_calibration_error",
    "fit_temperature",
    "oof_samples",
]

BINS = 15
PAD = 8


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """ECE of (K, N) probabilities against (N,) class indices, over ``bins`` confidence bins."""
    confidence = probabilities.max(axis=0)
    correct = probabilities.argmax(axis=0) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += abs(float(correct[inside].mean()) - float(confidence[inside].mean())) * inside.sum()
    return total / max(labels.size, 1)


def _nll(log_p: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = log_p / temperature
    z = z - z.max(axis=0, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=0))
    return float(-(z[labels, np.arange(labels.size)] - log_norm).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in [0.05, 20] minimising the NLL of (K, N) probabilities on (N,) class indices."""
    from scipy.optimize import minimize_scalar

    if labels.size == 0:
        raise ValueError("no voxels to fit a temperature on")
    log_p = np.log(np.clip(probabilities.astype(np.float64), _EPS, 1.0))
    result = minimize_scalar(
        lambda t: _nll(log_p, labels, math.exp(t)), bounds=(math.log(0.05), math.log(20.0)), method="bounded"
    )
    return float(math.exp(result.x))


def _box(mask: np.ndarray) -> tuple[slice, ...]:
    where = np.argwhere(mask)
    if where.size == 0:
        return tuple(slice(0, n) for n in mask.shape)
    low, high = where.min(0) - PAD, where.max(0) + PAD + 1
    return tuple(slice(max(int(a), 0), min(int(b), n)) for a, b, n in zip(low, high, mask.shape, strict=True))


def oof_samples(
    validation_folders: Sequence[Path],
    ref_folder: Path,
    ending: str,
    label_values: Sequence[int],
    max_voxels: int = 200_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Sampled (K, N) probabilities and (N,) class indices of every ``<case>.npz`` in the folders.

    Args:
        label_values: the label value of each probability channel (0 first).

    Raises:
        FileNotFoundError: no probabilities, or a case without its reference label (named).
    """
    from autoseg.io.images import read_image
    from autoseg.io.probabilities import load_probabilities

    files = sorted(f for folder in validation_folders for f in folder.glob("*.npz"))
    if not files:
        raise FileNotFoundError(
            f"no <case>.npz probabilities in {', '.join(map(str, validation_folders))} "
            "(train with trainer.save_probabilities=true)"
        )
    index = np.full(max(label_values) + 1, -1, dtype=np.int64)
    index[list(label_values)] = np.arange(len(label_values))
    rng = np.random.default_rng(seed)
    per_case = max(1, max_voxels // len(files))
    probs, labels = [], []
    for f in files:
        ref_file = ref_folder / f"{f.name[: -len('.npz')]}{ending}"
        if not ref_file.is_file():
            raise FileNotFoundError(f"{ref_file}: the reference of {f} is missing")
        p = load_probabilities(f)
        ref = np.asarray(read_image(ref_file)[0]).reshape(p.shape[1:])
        box = (slice(None), *_box((ref > 0) | (p.argmax(0) > 0)))
        flat, values = p[box].reshape(p.shape[0], -1), ref[box[1:]].reshape(-1)
        take = rng.choice(values.size, size=min(per_case, values.size), replace=False)
        known = np.clip(values[take], 0, index.size - 1)
        cls = np.where(values[take] < index.size, index[known], -1)
        keep = cls >= 0  # values outside the label set (an ignore label) do not count
        probs.append(flat[:, take][:, keep])
        labels.append(cls[keep])
    return np.concatenate(probs, axis=1), np.concatenate(labels)


def calibrate_configuration(
    validation_folders: Sequence[Path], ref_folder: Path, ending: str, label_values: Sequence[int]
) -> dict[str, Any]:
    """Fit ``T`` on the out-of-fold probabilities; ``{temperature, ece_before, ece_after, voxels}``."""
    probs, labels = oof_samples(validation_folders, ref_folder, ending, label_values)
    temperature = fit_temperature(probs, labels)
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(probs, labels),
        "ece_after": expected_calibration_error(apply_temperature(probs, temperature), labels),
        "voxels": int(labels.size),
    }
