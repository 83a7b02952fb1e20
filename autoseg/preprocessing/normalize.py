"""Intensity normalization schemes, per channel, chosen by name in the plans.

- ``ct``: clip to the dataset's foreground [0.5, 99.5] percentiles, then subtract the
  foreground mean and divide by the foreground std (global statistics from the fingerprint);
- ``zscore``: per image mean and std; with ``use_mask`` they are computed inside the
  non-zero mask and voxels outside it are set to 0;
- ``nonorm``: none (cast to float32);
- ``rescale_to_0_1``: per image min-max to [0, 1];
- ``rgb_to_0_1``: divide by 255;
- ``histogram``: histogram standardisation to landmarks fitted on the dataset (stored in the plans,
  :mod:`autoseg.preprocessing.steps`), then a z-score like ``zscore``.

Normalization runs after cropping and before resampling, as in nnU-Net, so the non-zero mask
still matches the image voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from autoseg.utils.lookup import look_up

EPS = 1e-8

#: ``fn(image, mask, intensity_properties) -> normalized float32 image``; mask may be None.
Normalizer = Callable[[np.ndarray, "np.ndarray | None", "Mapping[str, float] | None"], np.ndarray]


def _ct(image: np.ndarray, mask: np.ndarray | None, props: Mapping[str, float] | None) -> np.ndarray:
    if not props:
        raise ValueError("the 'ct' scheme needs the fingerprint's foreground intensity properties")
    out = np.clip(image, props["percentile_00_5"], props["percentile_99_5"]).astype(np.float32, copy=False)
    out -= np.float32(props["mean"])
    out /= np.float32(max(float(props["std"]), EPS))
    return out


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and std with float64 accumulation, without a float64 copy of ``values``."""
    if values.size == 0:
        return 0.0, 1.0
    mean = float(values.mean(dtype=np.float64))
    centred = values - np.float32(mean)
    return mean, float(np.sqrt(np.mean(np.square(centred, out=centred), dtype=np.float64)))


def _zscore(image: np.ndarray, mask: np.ndarray | None, props: Mapping[str, float] | None) -> np.ndarray:
    out = image.astype(np.float32, copy=True)
    mean, std = _mean_std(out if mask is None else out[mask])
    out -= np.float32(mean)
    out /= np.float32(max(std, EPS))
    if mask is not None:
        out[~mask] = 0
    return out


def _nonorm(image: np.ndarray, mask: np.ndarray | None, props: Mapping[str, float] | None) -> np.ndarray:
    return image.astype(np.float32, copy=True)


def _rescale_to_0_1(
    image: np.ndarray, mask: np.ndarray | None, props: Mapping[str, float] | None
) -> np.ndarray:
    out = image.astype(np.float32, copy=True)
    low, high = float(out.min()), float(out.max())
    out -= np.float32(low)
    out /= np.float32(max(high - low, EPS))
    return out


def _rgb_to_0_1(image: np.ndarray, mask: np.ndarray | None, props: Mapping[str, float] | None) -> np.ndarray:
    return image.astype(np.float32, copy=True) / np.float32(255.0)


def _histogram(image: np.ndarray, mask: np.ndarray | None, props: Mapping[str, Any] | None) -> np.ndarray:
    from autoseg.preprocessing.steps import histogram_standardize

    landmarks = (props or {}).get("histogram_landmarks")
    if not landmarks:
        raise ValueError(
            "the 'histogram' scheme needs the plans' histogram_landmarks; plan again with "
            "preprocessing.normalization=histogram"
        )
    return _zscore(histogram_standardize(image, landmarks), mask, props)


NORMALIZERS: dict[str, Normalizer] = {
    "ct": _ct,
    "zscore": _zscore,
    "nonorm": _nonorm,
    "rescale_to_0_1": _rescale_to_0_1,
    "rgb_to_0_1": _rgb_to_0_1,
    "histogram": _histogram,
}


def get_normalizer(name: str) -> Normalizer:
    """The normalization function registered as ``name`` (case-insensitive).

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    return look_up(NORMALIZERS, str(name).lower(), "normalization scheme")


def normalize(
    images: np.ndarray,
    schemes: Sequence[str],
    use_mask: Sequence[bool],
    mask: np.ndarray | None,
    intensity_properties: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Normalize each channel with its scheme.

    Args:
        images: (C, *spatial) array (not modified).
        schemes: one scheme name per channel.
        use_mask: per channel, whether ``zscore`` uses the non-zero mask.
        mask: (*spatial) bool non-zero mask, needed where ``use_mask`` is True.
        intensity_properties: ``foreground_intensity_properties_per_channel`` from the
            plans (keys ``"0"``, ``"1"``, ...), needed by ``ct``.

    Returns:
        (C, *spatial) float32.

    Raises:
        ValueError: the scheme list does not match the channels, or a scheme is unknown.
    """
    if len(schemes) != images.shape[0] or len(use_mask) != images.shape[0]:
        raise ValueError(
            f"{images.shape[0]} channels but {len(schemes)} normalization schemes and "
            f"{len(use_mask)} use_mask_for_norm flags in the plans"
        )
    props = intensity_properties or {}
    out: np.ndarray | None = None
    for c, (scheme, masked) in enumerate(zip(schemes, use_mask, strict=True)):
        fn = get_normalizer(scheme)
        if masked and mask is None:
            raise ValueError(f"channel {c}: use_mask_for_norm is set but no mask was given")
        channel = fn(images[c], mask if masked else None, props.get(str(c)))
        if images.shape[0] == 1:  # the normalizer's own new array: no second float32 copy of the case
            return channel.astype(np.float32, copy=False)[np.newaxis]
        if out is None:
            out = np.empty(images.shape, dtype=np.float32)
        out[c] = channel
        del channel
    assert out is not None
    return out
