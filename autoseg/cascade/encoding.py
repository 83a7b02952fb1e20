"""The 3d cascade's extra input: the previous stage's segmentation one-hot, and its augmentation.

The second stage sees the image channels plus one binary channel per foreground class (or region,
as the union of its values): :func:`one_hot_previous`. In training, those channels are corrupted
the way nnU-Net does so the network does not copy them blindly (:func:`corrupt_previous`), after
the spatial augmentation (which treats them as labels) and never by the intensity transforms:

- per channel, with probability ``p_morphology`` (0.4), one binary operation drawn from dilation,
  erosion, opening and closing, with a ball of radius drawn from ``radius`` (1..8 voxels);
- per channel, with probability ``p_remove`` (0.2), one connected component removed, drawn among
  those covering at most ``max_fraction`` (15 %) of the patch (none is removed if none is small).

Everything is drawn from the ``numpy`` generator passed in, so a batch stays a function of
``(seed, k)``.

Example:
    >>> prev = one_hot_previous(seg, [[1], [2]])  # (2, Z, Y, X) float32
    >>> prev = corrupt_previous(prev, np.random.default_rng([seed, k]))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

OPERATIONS = ("dilation", "erosion", "opening", "closing")


def one_hot_previous(seg: np.ndarray, channels: Sequence[Sequence[int]]) -> np.ndarray:
    """``seg`` (*spatial) integer label map -> (len(channels), *spatial) float32, channel ``i`` being
    1 where ``seg`` holds one of ``channels[i]`` (e.g. ``LabelManager.evaluation_classes.values()``)."""
    out = np.empty((len(channels), *seg.shape), dtype=np.float32)
    for i, values in enumerate(channels):
        out[i] = np.isin(seg, list(values))
    return out


def ball(radius: int, ndim: int) -> np.ndarray:
    """A boolean ball of ``radius`` voxels ((2r+1,)*ndim)."""
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return np.asarray((grid**2).sum(axis=0) <= radius**2)


def _morphology(mask: np.ndarray, operation: str, radius: int) -> np.ndarray:
    structure = ball(radius, mask.ndim)
    if operation == "dilation":
        return ndimage.binary_dilation(mask, structure)
    if operation == "erosion":
        return ndimage.binary_erosion(mask, structure)
    if operation == "opening":
        return ndimage.binary_opening(mask, structure)
    if operation == "closing":
        return ndimage.binary_closing(mask, structure)
    raise ValueError(f"unknown binary operation {operation!r}; valid: {', '.join(OPERATIONS)}")


def _remove_component(mask: np.ndarray, rng: np.random.Generator, max_fraction: float) -> np.ndarray:
    components, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(components.ravel())[1:]
    small = np.flatnonzero(sizes <= max_fraction * mask.size) + 1
    if small.size == 0:
        return mask
    return mask & (components != int(rng.choice(small)))


def corrupt_previous(
    previous: np.ndarray,
    rng: np.random.Generator,
    p_morphology: float = 0.4,
    radius: tuple[int, int] = (1, 8),
    p_remove: float = 0.2,
    max_fraction: float = 0.15,
) -> np.ndarray:
    """The one-hot previous-stage channels (K, *spatial), each corrupted at random (new array).

    Args:
        previous: (K, *spatial) binary channels (any dtype; read as ``> 0.5``).
        rng: the generator of the batch; the draws per channel are made whatever the outcome
            (two uniforms, an operation, a radius), so later draws do not depend on the data.
        p_morphology, radius: probability of a binary operation and the range of its ball radius.
        p_remove, max_fraction: probability of removing one component, and the largest one allowed.

    Returns:
        (K, *spatial) float32 of 0/1.
    """
    out = np.empty(previous.shape, dtype=np.float32)
    for c in range(previous.shape[0]):
        mask = previous[c] > 0.5
        u_morph, u_remove = rng.random(2)
        operation = OPERATIONS[int(rng.integers(len(OPERATIONS)))]
        r = int(rng.integers(radius[0], radius[1] + 1))
        if u_morph < p_morphology and mask.any():
            mask = _morphology(mask, operation, r)
        if u_remove < p_remove:
            mask = _remove_component(mask, rng, max_fraction)
        out[c] = mask
    return out
