"""Training augmentation: nnU-Net's default transforms, drawn and applied separately.

:meth:`Augmenter.draw` takes every random number of one sample from a numpy generator and
returns them as a frozen :class:`AugmentParams`; :meth:`Augmenter.apply` is deterministic
given those parameters (replayable, and the same on a CPU worker or, batched through
:meth:`Augmenter.apply_batch`, on the GPU).

Order and defaults follow nnU-Net v2 ``get_training_transforms`` (facts §5): rotation and
scaling (from an enlarged crop, computed for the output patch only), noise, blur,
brightness, contrast, low-resolution simulation, inverted gamma, gamma, mirroring, -1 -> 0.
One deliberate difference: mirroring is folded into the spatial step (it flips the sampling
grid, or is part of the crop copy), i.e. it happens before the intensity transforms instead
of after. Those are flip-equivariant (noise is i.i.d., blur is symmetric with reflect
padding, the others use global statistics), so the distribution of samples is the same
while a full copy of the patch is saved.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autoseg.data import intensity
from autoseg.data.plugins import ExtraTransforms
from autoseg.data.sampling import enlarged_crop_size
from autoseg.data.spatial import center_crop_flip, required_size, resample, sampling_matrix

__all__ = ["ANISO_THRESHOLD", "AugmentConfig", "AugmentParams", "Augmenter"]

ANISO_THRESHOLD = 3.0  # nnU-Net: "dummy 2D" augmentation when max(patch) / patch[0] > 3
Range = tuple[float, float]


class _class_or_instance_method:  # noqa: N801 (used like @classmethod)
    """A method bound to the instance, or to a default instance when called on the class."""

    def __init__(self, func: Callable[[AugmentConfig, Sequence[int]], AugmentConfig]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(
        self, obj: AugmentConfig | None, cls: type[AugmentConfig] | None = None
    ) -> Callable[[Sequence[int]], AugmentConfig]:
        target = obj if obj is not None else (cls or AugmentConfig)()
        return types.MethodType(self.func, target)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the training augmentation (nnU-Net v2 defaults).

    ``rotation_deg``, ``dummy_2d`` and ``mirror_axes`` left at None are chosen from the
    patch by :meth:`for_patch` (the :class:`Augmenter` calls it).

    Attributes:
        p_rotation: probability of a rotation.
        rotation_deg: largest |angle| in degrees: 3D, one per array axis the rotation is
            about (nnU-Net: 30, 30, 30); 2D and dummy 2D, one in-plane angle.
        dummy_2d: rotate and scale in the (y, x) plane only, each slice alike (for patches
            with a short first axis).
        p_scaling: probability of a zoom; scaling: its range (one factor for all axes;
            > 1 samples a larger region, so objects get smaller).
        crop_scale_min: the enlarged crop is the rotated patch's extent divided by this
            (nnU-Net's ``get_patch_size`` uses 0.85).
        p_noise, noise_std: additive Gaussian noise, std ~ U(noise_std) (nnU-Net's
            ``noise_variance=(0, 0.1)`` is used as a std there as well).
        p_blur, blur_sigma, p_blur_per_channel: Gaussian blur, sigma ~ U per axis and channel.
        p_brightness, brightness: multiplicative brightness per channel.
        p_contrast, contrast: contrast factor per channel (range preserved).
        p_lowres, lowres_scale, p_lowres_per_channel: low-resolution simulation.
        p_gamma_inverted, p_gamma, gamma: gamma on the inverted / plain image per channel.
        p_mirror: probability of mirroring each axis in ``mirror_axes`` (None: all axes).
        extra: TorchIO transforms run after these on the output patch, each a mapping with
            ``_target_`` and its arguments (:mod:`autoseg.data.plugins`).

    Factors for brightness, contrast and gamma are drawn like nnU-Net's ``BGContrast``:
    half of the time from ``(lo, 1)``, else from ``(1, hi)``.
    """

    p_rotation: float = 0.2
    rotation_deg: tuple[float, ...] | None = None
    dummy_2d: bool | None = None
    p_scaling: float = 0.2
    scaling: Range = (0.7, 1.4)
    crop_scale_min: float = 0.85
    p_noise: float = 0.1
    noise_std: Range = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma: Range = (0.5, 1.0)
    p_blur_per_channel: float = 0.5
    p_brightness: float = 0.15
    brightness: Range = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: Range = (0.75, 1.25)
    p_lowres: float = 0.25
    lowres_scale: Range = (0.5, 1.0)
    p_lowres_per_channel: float = 0.5
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: Range = (0.7, 1.5)
    p_mirror: float = 0.5
    mirror_axes: tuple[int, ...] | None = None
    extra: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                problems.append(f"{f.name}={value} (a probability in [0, 1])")
            elif f.type == "Range" and not (len(value) == 2 and value[0] <= value[1]):
                problems.append(f"{f.name}={value} (a (low, high) pair with low <= high)")
        if self.scaling[0] <= 0 or self.crop_scale_min <= 0:
            problems.append(f"scaling={self.scaling}, crop_scale_min={self.crop_scale_min} (must be > 0)")
        bad = [e for e in self.extra if not isinstance(e, Mapping) or "_target_" not in e]
        if bad:
            problems.append(f"extra={bad} (each a mapping with '_target_', e.g. torchio.RandomBiasField)")
        if self.lowres_scale[0] <= 0 or self.blur_sigma[0] <= 0:
            problems.append(f"lowres_scale={self.lowres_scale}, blur_sigma={self.blur_sigma} (must be > 0)")
        if problems:
            raise ValueError("AugmentConfig: invalid " + "; ".join(problems))

    @_class_or_instance_method
    def for_patch(self, patch_size: Sequence[int]) -> AugmentConfig:
        """Fill the unset rotation range, dummy-2D flag and mirror axes by nnU-Net's rules.

        Called on the class (``AugmentConfig.for_patch(patch)``) it starts from the
        defaults; called on a config it keeps that config's other fields.

        3D: dummy 2D when ``max(patch) / patch[0] > 3``, then ±180° in-plane, else ±30°
        about each axis. 2D: ±180°, or ±15° when ``max(patch) / min(patch) > 1.5``.
        Mirroring: all axes. Values already set are kept.

        Args:
            patch_size: 2 or 3 patch sizes.

        Returns:
            A config with ``rotation_deg``, ``dummy_2d`` and ``mirror_axes`` set.

        Example:
            >>> AugmentConfig().for_patch((12, 192, 160)).rotation_deg
            (180.0,)
        """
        patch = [int(p) for p in patch_size]
        if len(patch) == 3:
            dummy = self.dummy_2d if self.dummy_2d is not None else max(patch) / patch[0] > ANISO_THRESHOLD
            default: tuple[float, ...] = (180.0,) if dummy else (30.0, 30.0, 30.0)
        elif len(patch) == 2:
            dummy = False
            default = (15.0,) if max(patch) / min(patch) > 1.5 else (180.0,)
        else:
            raise ValueError(f"patch_size must have 2 or 3 values, got {patch_size}")
        rotation = self.rotation_deg if self.rotation_deg is not None else default
        mirror = self.mirror_axes if self.mirror_axes is not None else tuple(range(len(patch)))
        return dataclasses.replace(
            self, rotation_deg=tuple(float(r) for r in rotation), dummy_2d=dummy, mirror_axes=tuple(mirror)
        )


@dataclass(frozen=True)
class AugmentParams:
    """Every random number of one augmented sample (replayable; picklable).

    Per-channel tuples are empty when the transform did not fire; a ``None`` entry skips
    that channel.

    Attributes:
        angles: rotation angles in radians (3 in 3D, 1 in 2D / dummy 2D); () for none.
        scale: zoom factor (1.0 for none).
        mirror: mirrored spatial axes.
        noise_std, noise_seed: additive noise (std 0: none) and the seed of its field.
        blur_sigma: per channel, one sigma per spatial axis, or None.
        brightness, contrast: per-channel factors.
        lowres: per channel, the low-resolution scale or None.
        gamma_inverted, gamma: per-channel exponents.
        extra_seed: seeds the extra TorchIO transforms of this sample (0 when there are none).
    """

    angles: tuple[float, ...] = ()
    scale: float = 1.0
    mirror: tuple[int, ...] = ()
    noise_std: float = 0.0
    noise_seed: int = 0
    blur_sigma: tuple[tuple[float, ...] | None, ...] = ()
    brightness: tuple[float, ...] = ()
    contrast: tuple[float, ...] = ()
    lowres: tuple[float | None, ...] = ()
    gamma_inverted: tuple[float, ...] = ()
    gamma: tuple[float, ...] = ()
    extra_seed: int = 0

    @property
    def spatial(self) -> bool:
        """Whether the patch is resampled (a rotation or scaling fired)."""
        return bool(self.angles) or self.scale != 1.0


def _bg_factor(rng: np.random.Generator, lo: float, hi: float) -> float:
    """nnU-Net's BGContrast: half of the time below 1, else above (when the range spans 1)."""
    if rng.random() < 0.5 and lo < 1:
        return float(rng.uniform(lo, 1.0))
    return float(rng.uniform(max(lo, 1.0), hi))


class Augmenter:
    """Draws and applies nnU-Net's training augmentation for one patch size.

    Args:
        patch_size: the network's patch size, 2 or 3 values.
        config: probabilities and ranges (default :class:`AugmentConfig`; unset rotation
            range, dummy-2D flag and mirror axes are chosen from the patch).
        num_channels: image channels C (per-channel parameters are drawn for each).

    Attributes:
        crop_size: the enlarged crop to sample patches from (give it to
            :class:`~autoseg.data.sampling.PatchSampler`); the patch when neither rotation
            nor scaling can fire.

    Example:
        >>> aug = Augmenter((40, 56, 40))
        >>> params = aug.draw(np.random.default_rng(0))
        >>> image, seg = torch.zeros(1, *aug.crop_size), torch.zeros(1, *aug.crop_size, dtype=torch.int8)
        >>> out_image, out_seg = aug.apply(image, seg, params)
        >>> tuple(out_image.shape), out_seg.dtype
        ((1, 40, 56, 40), torch.int64)
    """

    def __init__(
        self, patch_size: Sequence[int], config: AugmentConfig | None = None, num_channels: int = 1
    ) -> None:
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) not in (2, 3) or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be 2 or 3 positive sizes, got {tuple(patch_size)}")
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}")
        self.config = (config if config is not None else AugmentConfig()).for_patch(self.patch_size)
        self.num_channels = int(num_channels)
        self.ndim = len(self.patch_size)
        self.dummy_2d = bool(self.config.dummy_2d) and self.ndim == 3
        # the resampled axes: the last two for 2D and dummy 2D, else all three
        self.grid_ndim = 2 if self.dummy_2d or self.ndim == 2 else 3
        rotation = tuple(self.config.rotation_deg or ())
        mirror = tuple(self.config.mirror_axes or ())
        problems = []
        expected = 1 if self.grid_ndim == 2 else 3
        if len(rotation) != expected:
            problems.append(
                f"rotation_deg={rotation} has {len(rotation)} value(s), a "
                f"{'2D / dummy-2D' if expected == 1 else '3D'} patch {self.patch_size} needs {expected}"
            )
        if any(a not in range(self.ndim) for a in mirror):
            problems.append(f"mirror_axes={mirror} must be among {tuple(range(self.ndim))}")
        if problems:
            raise ValueError("Augmenter: " + "; ".join(problems))
        self.extra = ExtraTransforms(self.config.extra) if self.config.extra else None
        self.crop_size = enlarged_crop_size(
            self.patch_size,
            rotation if self.config.p_rotation > 0 else (0.0,) * expected,
            self.config.crop_scale_min if self.config.p_scaling > 0 else 1.0,
            dummy_2d=self.dummy_2d,
        )

    def __repr__(self) -> str:
        return f"Augmenter(patch_size={self.patch_size}, crop_size={self.crop_size}, config={self.config})"

    # ------------------------------------------------------------------------------ draw
    def draw(self, rng: np.random.Generator) -> AugmentParams:
        """Every random number of one sample, in nnU-Net's order.

        Args:
            rng: the generator to draw from (e.g. one per batch, seeded by its index).

        Returns:
            The parameters for :meth:`apply`.
        """
        cfg = self.config
        angles, scale = self._draw_spatial(rng)
        noise_std, noise_seed, blur = self._draw_noise_and_blur(rng)
        brightness, contrast, lowres, gamma_inverted, gamma = self._draw_intensity(rng)
        mirror = tuple(a for a in cfg.mirror_axes or () if rng.random() < cfg.p_mirror)
        extra_seed = int(rng.integers(1, 2**63 - 1)) if self.extra is not None else 0
        return AugmentParams(
            angles=angles,
            scale=scale,
            mirror=mirror,
            noise_std=noise_std,
            noise_seed=noise_seed,
            blur_sigma=blur if any(s is not None for s in blur) else (),
            brightness=brightness,
            contrast=contrast,
            lowres=lowres if any(s is not None for s in lowres) else (),
            gamma_inverted=gamma_inverted,
            gamma=gamma,
            extra_seed=extra_seed,
        )

    def _draw_spatial(self, rng: np.random.Generator) -> tuple[tuple[float, ...], float]:
        """Rotation angles (radians; empty: none) and the scale factor (1: none)."""
        cfg = self.config
        rotate = rng.random() < cfg.p_rotation
        zoom = rng.random() < cfg.p_scaling
        angles = (
            tuple(float(np.deg2rad(rng.uniform(-r, r))) for r in cfg.rotation_deg or ()) if rotate else ()
        )
        return angles, float(rng.uniform(*cfg.scaling)) if zoom else 1.0

    def _draw_noise_and_blur(
        self, rng: np.random.Generator
    ) -> tuple[float, int, tuple[tuple[float, ...] | None, ...]]:
        """Noise std and seed (0, 0: none), then per channel the blur sigmas (None: not blurred)."""
        cfg = self.config
        noise_std, noise_seed = 0.0, 0
        if rng.random() < cfg.p_noise:
            noise_std = float(rng.uniform(*cfg.noise_std))
            noise_seed = int(rng.integers(2**63 - 1))
        blur: tuple[tuple[float, ...] | None, ...] = ()
        if rng.random() < cfg.p_blur:
            blur = tuple(
                tuple(float(rng.uniform(*cfg.blur_sigma)) for _ in range(self.ndim))
                if rng.random() < cfg.p_blur_per_channel
                else None
                for _ in range(self.num_channels)
            )
        return noise_std, noise_seed, blur

    def _draw_intensity(self, rng: np.random.Generator) -> tuple[tuple, tuple, tuple, tuple, tuple]:
        """Per-channel brightness, contrast, low-resolution scale, inverted gamma and gamma (empty: none)."""
        cfg = self.config
        channels = range(self.num_channels)
        brightness = (
            tuple(_bg_factor(rng, *cfg.brightness) for _ in channels)
            if rng.random() < cfg.p_brightness
            else ()
        )
        contrast = (
            tuple(_bg_factor(rng, *cfg.contrast) for _ in channels) if rng.random() < cfg.p_contrast else ()
        )
        lowres: tuple[float | None, ...] = ()
        if rng.random() < cfg.p_lowres:
            lowres = tuple(
                float(rng.uniform(*cfg.lowres_scale)) if rng.random() < cfg.p_lowres_per_channel else None
                for _ in channels
            )
        gamma_inverted = (
            tuple(_bg_factor(rng, *cfg.gamma) for _ in channels)
            if rng.random() < cfg.p_gamma_inverted
            else ()
        )
        gamma = tuple(_bg_factor(rng, *cfg.gamma) for _ in channels) if rng.random() < cfg.p_gamma else ()
        return brightness, contrast, lowres, gamma_inverted, gamma

    # ---------------------------------------------------------------------- geometry
    def matrix(self, params: AugmentParams) -> np.ndarray | None:
        """The (d, d) sampling matrix of the resampled axes, None when nothing is resampled."""
        if not params.spatial:
            return None
        axes = range(self.ndim - self.grid_ndim, self.ndim)
        return sampling_matrix(params.angles, params.scale, [a in params.mirror for a in axes])

    def _matrix(self, params: AugmentParams) -> np.ndarray:
        matrix = self.matrix(params)
        assert matrix is not None
        return matrix

    def required_crop(self, params: AugmentParams, crop_size: Sequence[int] | None = None) -> tuple[int, ...]:
        """The centred part of the crop that :meth:`apply` reads for these parameters.

        Cropping only this much (``PatchSampler.crop(spec, size)``) gives the same patch as
        the whole enlarged crop, up to float rounding: without rotation/scaling it is the
        patch itself (parity adjusted), with them the box the sampled coordinates reach.

        Args:
            params: one sample's parameters.
            crop_size: the full crop size (default :attr:`crop_size`).

        Returns:
            A size between the patch and the crop size per axis.
        """
        crop = tuple(crop_size) if crop_size is not None else self.crop_size
        return required_size(self.matrix(params), self.patch_size, crop)

    # ------------------------------------------------------------------------- apply
    def apply(
        self, image: torch.Tensor, seg: torch.Tensor, params: AugmentParams
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one sample (deterministic given ``params``).

        Args:
            image: (C, *crop) float32 crop (any crop >= patch; the patch is taken from its
                centre, at offset ``(crop - patch) // 2``). Not modified.
            seg: (1, *crop) integer labels, -1 outside the image.
            params: from :meth:`draw`.

        Returns:
            ``(image, seg)``: (C, *patch) float32 and (1, *patch) int64 with -1 mapped to 0.
        """
        image, seg = self._check(image[None], seg[None], [params])
        out_image, out_seg = self._spatial(image, seg, [params])
        self._intensity_(out_image[0], params)
        if self.extra is not None:
            return self.extra(out_image[0], out_seg[0], params.extra_seed)
        return out_image[0], out_seg[0]

    def apply_batch(
        self, images: torch.Tensor, segs: torch.Tensor, params: Sequence[AugmentParams]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch on its device (e.g. the GPU); equal to :meth:`apply` per sample.

        Samples that are rotated or scaled are resampled in one ``grid_sample`` call; the
        intensity transforms run per sample on the device (noise from a generator of that
        device, so CPU and GPU noise fields differ; on one device the results are equal).

        Args:
            images: (B, C, *crop) float32 crops. Not modified.
            segs: (B, 1, *crop) integer labels.
            params: B parameter sets.

        Returns:
            ``(images, segs)``: (B, C, *patch) float32 and (B, 1, *patch) int64.
        """
        if self.extra is not None:
            raise ValueError(
                f"the extra TorchIO transforms {self.extra} run in the data workers (apply), not on the "
                "device batch; drop augment.extra or augment in the workers"
            )
        images, segs = self._check(images, segs, params)
        out_images, out_segs = self._spatial(images, segs, params)
        for b, p in enumerate(params):
            self._intensity_(out_images[b], p)
        return out_images, out_segs

    def _check(
        self, images: torch.Tensor, segs: torch.Tensor, params: Sequence[AugmentParams]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        crop = tuple(images.shape[2:])
        problems = []
        if images.ndim != self.ndim + 2 or segs.shape != (images.shape[0], 1, *crop):
            problems.append(
                f"expected image (C, *crop) / seg (1, *crop) with {self.ndim} spatial axes (batched: a "
                f"leading B), got {tuple(images.shape)} and {tuple(segs.shape)}"
            )
        elif any(c < p for c, p in zip(crop, self.patch_size, strict=True)):
            problems.append(f"crop {crop} is smaller than the patch {self.patch_size}")
        if len(params) != images.shape[0]:
            problems.append(f"{len(params)} parameter sets for {images.shape[0]} samples")
        channels = images.shape[1] if images.ndim > 1 else 0
        for p in params:
            for name in ("blur_sigma", "brightness", "contrast", "lowres", "gamma_inverted", "gamma"):
                values = getattr(p, name)
                if values and len(values) != channels:
                    problems.append(f"{name} has {len(values)} channel value(s), the image has {channels}")
                    break
        if problems:
            raise ValueError("Augmenter: " + "; ".join(problems))
        return images.to(torch.float32), segs

    def _spatial(
        self, images: torch.Tensor, segs: torch.Tensor, params: Sequence[AugmentParams]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, *crop) -> (B, C, *patch) float32 and (B, 1, *patch) int64."""
        out_images: list[torch.Tensor | None] = [None] * len(params)
        out_segs: list[torch.Tensor | None] = [None] * len(params)
        resampled = [b for b, p in enumerate(params) if p.spatial]
        for b, p in enumerate(params):
            if not p.spatial:
                out_images[b] = center_crop_flip(images[b], self.patch_size, p.mirror)
                out_segs[b] = (
                    center_crop_flip(segs[b], self.patch_size, p.mirror).to(torch.int64).clamp_(min=0)
                )
        if resampled:
            matrices = torch.from_numpy(np.stack([self._matrix(params[b]) for b in resampled]))
            index = torch.tensor(resampled, device=images.device)
            sub_images = images if len(resampled) == len(params) else images.index_select(0, index)
            sub_segs = segs if len(resampled) == len(params) else segs.index_select(0, index)
            if self.dummy_2d:
                image_r, seg_r = self._resample_slices(sub_images, sub_segs, matrices)
                for i, b in enumerate(resampled):
                    if 0 in params[b].mirror:
                        image_r[i], seg_r[i] = image_r[i].flip(1), seg_r[i].flip(1)
            else:
                image_r, seg_r = resample(sub_images, sub_segs, matrices, self.patch_size)
            for i, b in enumerate(resampled):
                out_images[b], out_segs[b] = image_r[i], seg_r[i]
        if len(params) == 1:
            return out_images[0][None], out_segs[0][None]  # type: ignore[index]
        return torch.stack(out_images), torch.stack(out_segs)  # type: ignore[arg-type]

    def _resample_slices(
        self, images: torch.Tensor, segs: torch.Tensor, matrices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dummy 2D: the same in-plane transform for every slice of the centred z range."""
        b, c, pz = images.shape[0], images.shape[1], self.patch_size[0]
        oz = (images.shape[2] - pz) // 2
        planes = images[:, :, oz : oz + pz].reshape(b, c * pz, *images.shape[3:])
        seg_planes = segs[:, :, oz : oz + pz].reshape(b, pz, *segs.shape[3:])
        image_r, seg_r = resample(planes, seg_planes, matrices, self.patch_size[1:])
        return image_r.view(b, c, *self.patch_size), seg_r.view(b, 1, *self.patch_size)

    def _intensity_(self, x: torch.Tensor, p: AugmentParams) -> None:
        """Noise, blur, brightness, contrast, low-res, inverted gamma, gamma; in place on (C, *patch)."""
        if p.noise_std > 0:
            intensity.add_noise_(x, p.noise_std, p.noise_seed)
        for c, sigmas in enumerate(p.blur_sigma):
            if sigmas is not None:
                x[c] = intensity.gaussian_blur(x[c], sigmas)
        for c, factor in enumerate(p.brightness):
            x[c].mul_(factor)
        for c, factor in enumerate(p.contrast):
            intensity.contrast_(x[c], factor)
        keep = (0,) if self.dummy_2d else ()
        for c, scale in enumerate(p.lowres):
            if scale is not None:
                x[c] = intensity.simulate_low_resolution(x[c], scale, keep)
        for c, g in enumerate(p.gamma_inverted):
            intensity.gamma_(x[c], g, invert=True)
        for c, g in enumerate(p.gamma):
            intensity.gamma_(x[c], g, invert=False)
