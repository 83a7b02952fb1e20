"""Optional preprocessing steps, chosen when planning and recorded in the plan.

``autoseg plan D preprocessing.denoise=nlmeans`` (or ``gaussian``, ``median``) adds a denoising
step that runs on every channel after cropping and before normalisation, in training and in
prediction alike; ``preprocessing.normalization=histogram`` standardises every channel's histogram
to landmarks fitted on the dataset's images (Nyúl & Udupa, with TorchIO) before a z-score. Both
are off by default (nnU-Net's preprocessing), and both are recorded in plans.json: the
configuration's ``preprocessing.denoise`` and ``normalization_schemes``, and the plans'
``histogram_landmarks``. An unknown name is refused with the nearest valid one.

Example:
    >>> choice = PreprocessingChoice(denoise="median", denoise_params={"size": 3})
    >>> choice.denoise_spec()
    {'name': 'median', 'size': 3}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.utils.lookup import unknown_name

__all__ = [
    "DENOISERS",
    "NORMALIZATION_CHOICES",
    "PreprocessingChoice",
    "denoise",
    "fit_histogram_landmarks",
    "histogram_standardize",
]

Denoiser = Callable[..., np.ndarray]


def _estimated_noise(image: np.ndarray) -> float:
    """Robust noise std: the median absolute difference of neighbours along the last axis."""
    diff = np.abs(np.diff(image, axis=-1))
    return float(np.median(diff) / 0.6745 / np.sqrt(2)) if diff.size else 0.0


def _gaussian(image: np.ndarray, sigma: float = 0.5) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(image, sigma=float(sigma), mode="nearest")


def _median(image: np.ndarray, size: int = 3) -> np.ndarray:
    from scipy import ndimage

    return ndimage.median_filter(image, size=int(size), mode="nearest")


def _nlmeans(image: np.ndarray, patch_size: int = 3, patch_distance: int = 3, h: float = 0.8) -> np.ndarray:
    """Non-local means (scikit-image, fast mode); ``h`` in units of the estimated noise std."""
    from skimage.restoration import denoise_nl_means

    sigma = _estimated_noise(image)
    if sigma == 0:
        return image
    return denoise_nl_means(
        image, patch_size=int(patch_size), patch_distance=int(patch_distance), h=h * sigma, sigma=sigma,
        fast_mode=True, preserve_range=True,
    ).astype(np.float32, copy=False)  # fmt: skip


#: name -> ``fn(image, **params) -> image`` (one channel, float32).
DENOISERS: dict[str, Denoiser] = {"gaussian": _gaussian, "median": _median, "nlmeans": _nlmeans}
#: ``preprocessing.normalization``: ``auto`` keeps nnU-Net's choice per channel (CT -> ct, else zscore).
NORMALIZATION_CHOICES = ("auto", "ct", "zscore", "rescale_to_0_1", "nonorm", "histogram")


def _unknown(what: str, name: str, valid: Sequence[str]) -> ValueError:
    return ValueError(unknown_name(what, name, valid))


@dataclass(frozen=True)
class PreprocessingChoice:
    """The ``preprocessing`` config group (conf/preprocessing/default.yaml).

    Attributes:
        normalization: ``auto`` or one scheme for every channel (see :data:`NORMALIZATION_CHOICES`).
        denoise: ``none`` or a key of :data:`DENOISERS`.
        denoise_params: the denoiser's keyword arguments (``sigma``; ``size``; ``patch_size``,
            ``patch_distance``, ``h``).
    """

    normalization: str = "auto"
    denoise: str = "none"
    denoise_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATION_CHOICES:
            raise _unknown("preprocessing.normalization", self.normalization, NORMALIZATION_CHOICES)
        if self.denoise != "none" and self.denoise not in DENOISERS:
            raise _unknown("preprocessing.denoise", self.denoise, ["none", *DENOISERS])
        if self.denoise == "none" and self.denoise_params:
            raise ValueError("preprocessing.denoise_params are given but preprocessing.denoise is none")
        if self.denoise != "none":
            _check_params(self.denoise, self.denoise_params)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PreprocessingChoice:
        from autoseg.utils.dataclasses import from_mapping

        values = {k: v for k, v in data.items() if k != "name"}
        values["denoise_params"] = dict(values.get("denoise_params") or {})
        return from_mapping(cls, values, "preprocessing")

    def denoise_spec(self) -> dict[str, Any] | None:
        """The plan's ``preprocessing.denoise`` entry, or None when off."""
        return None if self.denoise == "none" else {"name": self.denoise, **dict(self.denoise_params)}


def _check_params(name: str, params: Mapping[str, Any]) -> None:
    import inspect

    accepted = [p for p in inspect.signature(DENOISERS[name]).parameters if p != "image"]
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise ValueError(f"preprocessing.denoise_params {unknown} are not arguments of {name} ({accepted})")


def denoise(images: np.ndarray, spec: Mapping[str, Any] | None) -> np.ndarray:
    """Denoise each channel of ``images`` (C, *spatial) as ``spec`` (the plan's entry) says; float32."""
    if not spec:
        return images
    params = {k: v for k, v in spec.items() if k != "name"}
    name = str(spec.get("name"))
    if name not in DENOISERS:
        raise _unknown("denoiser in the plan", name, list(DENOISERS))
    _check_params(name, params)
    return np.stack([DENOISERS[name](c.astype(np.float32, copy=False), **params) for c in images]).astype(
        np.float32, copy=False
    )


def _above_mean(tensor: Any) -> Any:
    """The voxels the histogram landmarks are taken from: brighter than the image's mean."""
    return tensor > tensor.float().mean()


def fit_histogram_landmarks(files_per_channel: Mapping[int, Sequence[Path]]) -> dict[str, list[float]]:
    """Nyúl-Udupa landmarks per channel from the dataset's image files (TorchIO's ``train``).

    Returns:
        ``{"0": [landmarks], ...}``, as stored under ``histogram_landmarks`` in plans.json.
    """
    import torchio

    out = {}
    for channel, files in sorted(files_per_channel.items()):
        landmarks = torchio.HistogramStandardization.train(
            [str(f) for f in files], masking_function=_above_mean
        )
        out[str(channel)] = [float(v) for v in landmarks]
    return out


def histogram_standardize(image: np.ndarray, landmarks: Sequence[float]) -> np.ndarray:
    """Map one channel's histogram onto ``landmarks`` (piecewise linear between percentiles); float32."""
    import torch
    import torchio

    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    volume = tensor.reshape(1, *tensor.shape, *(1,) * (3 - tensor.ndim))  # TorchIO wants (1, W, H, D)
    transform = torchio.HistogramStandardization({"image": np.asarray(landmarks)}, masking_method=_above_mean)
    out: Any = transform(torchio.Subject(image=torchio.ScalarImage(tensor=volume)))
    return out["image"].data.reshape(image.shape).numpy().astype(np.float32, copy=False)
