"""Where training patches come from: cases, crop positions, foreground oversampling.

Follows nnU-Net v2's ``nnUNetDataLoader`` (facts §5 "Sampling"): cases are drawn
uniformly; the last ``bs - round(bs * (1 - p))`` samples of a batch are forced to contain
foreground (a random present class, centred on a random stored voxel of it); crops are
taken at an enlarged size so that rotated and scaled patches have no empty corners, and
padded with 0 (image) and -1 (labels). 2D configurations pick one slice z of the 3D
volume first. :meth:`PatchSampler.draw` is the random part, :meth:`PatchSampler.crop` the
deterministic one.

One deliberate difference: a forced crop is clamped to the range of random crops on both
sides (nnU-Net clamps the lower side only), so a foreground voxel near the far border does
not produce a patch that is half padding. The voxel stays inside the patch.

Region datasets (``regions``) force over regions: a random region with stored voxels, then a
random stored voxel of any of its values. With an ignore label, a case without foreground
centres its forced crop on an annotated voxel (key
:data:`~autoseg.preprocessing.locations.ANNOTATED`), so forced patches hold annotations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoseg.data.cases import PreprocessedCases
from autoseg.data.spatial import rotation_matrices
from autoseg.preprocessing.locations import ANNOTATED

__all__ = ["CropSpec", "PatchSampler", "enlarged_crop_size"]


@dataclass(frozen=True)
class CropSpec:
    """One sample's crop, everything random already decided.

    Attributes:
        case: the case identifier.
        start: first voxel of the enlarged crop per patch axis ((y, x) in 2D); may be
            negative or reach past the image (padded).
        force_foreground: whether the sample was forced to contain foreground.
        slice_index: the z slice (2D configurations), else None.
        label: the foreground class the crop is centred on (regions: the region's index; an
            annotated voxel: ``ANNOTATED``), None for a random crop.
    """

    case: str
    start: tuple[int, ...]
    force_foreground: bool
    slice_index: int | None = None
    label: int | None = None


def _extent(patch: np.ndarray, rotation_deg: Sequence[float]) -> np.ndarray:
    """Largest per-axis extent of the patch box rotated by any angles within +-rotation_deg."""
    axes = []
    for r in rotation_deg:
        r = min(abs(float(r)), 180.0)
        axes.append(np.deg2rad(np.linspace(-r, r, 31 if r > 0 else 1)))
    grids = np.meshgrid(*axes, indexing="ij")
    matrices = rotation_matrices(np.stack([g.ravel() for g in grids], -1))
    extent = (np.abs(matrices) @ patch).max(axis=0)
    return np.minimum(np.maximum(extent, patch), np.linalg.norm(patch))  # never beyond the diagonal


def enlarged_crop_size(
    patch_size: Sequence[int], rotation_deg: Sequence[float], scale_min: float, dummy_2d: bool = False
) -> tuple[int, ...]:
    """The crop from which rotated and scaled patches can be sampled without empty corners.

    The per-axis bounding box of the patch rotated by every combination of angles within
    the ranges (nnU-Net's ``get_patch_size`` rotates one corner about one axis at a time,
    which underestimates combined 3D rotations), divided by ``scale_min`` (nnU-Net: 0.85),
    rounded up so that ``crop - patch`` is even (the patch then sits exactly in the middle).

    Args:
        patch_size: 2 or 3 patch sizes.
        rotation_deg: largest |angle| in degrees: 3 values (about axes 0, 1, 2) for a 3D
            patch, 1 in-plane value for a 2D patch or for dummy 2D.
        scale_min: smallest zoom the crop must support (> 0; 1 for none).
        dummy_2d: 3D patch rotated and scaled in the (y, x) plane only: axis 0 keeps the
            patch size.

    Returns:
        The crop size, >= patch per axis, growing with the rotation.

    Example:
        >>> enlarged_crop_size((40, 56, 40), (30, 30, 30), 0.85)
        (90, 94, 88)
        >>> enlarged_crop_size((12, 192, 160), (180,), 0.85, dummy_2d=True)
        (12, 294, 294)
    """
    patch = np.asarray([int(p) for p in patch_size], dtype=np.float64)
    rotation = [float(r) for r in rotation_deg]
    planar = len(patch) == 2 or dummy_2d
    problems = []
    if len(patch) not in (2, 3) or patch.min() < 1:
        problems.append(f"patch_size {tuple(patch_size)} must be 2 or 3 positive sizes")
    elif len(rotation) != (1 if planar else 3):
        problems.append(f"rotation_deg {tuple(rotation_deg)} must have {1 if planar else 3} value(s) here")
    if dummy_2d and len(patch) != 3:
        problems.append("dummy_2d needs a 3D patch")
    if not scale_min > 0:
        problems.append(f"scale_min must be > 0, got {scale_min}")
    if problems:
        raise ValueError("enlarged_crop_size: " + "; ".join(problems))
    if planar:
        extent = np.concatenate([patch[:-2], _extent(patch[-2:], rotation) / scale_min])
    else:
        extent = _extent(patch, rotation) / scale_min
    crop = np.maximum(np.ceil(extent - 1e-6), patch).astype(np.int64)
    crop += (crop - patch.astype(np.int64)) % 2
    return tuple(int(c) for c in crop)


def _crop_pad(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float) -> np.ndarray:
    """``array[:, start:start+size]`` (C, *spatial) as a new array, ``fill`` outside."""
    spatial = array.shape[1:]
    src, dst, inside = [slice(None)], [slice(None)], True
    for s, n, length in zip(start, size, spatial, strict=True):
        lo, hi = max(s, 0), min(s + n, length)
        inside &= lo == s and hi == s + n
        hi = max(hi, lo)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    if inside:
        return np.array(array[tuple(src)])
    out = np.full((array.shape[0], *size), fill, dtype=array.dtype)
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Draws training crops from preprocessed cases (nnU-Net's sampling).

    Args:
        cases: the cases to sample from.
        patch_size: the network's patch, 3 values (3D) or 2 (2D: a (y, x) patch of one slice).
        batch_size: samples per batch.
        oversample_foreground: nnU-Net's ``oversample_foreground_percent``: the last
            ``batch_size - round(batch_size * (1 - p))`` samples are forced to foreground
            (bs 2 -> 1, bs 9 -> 3 at 0.33).
        crop_size: the enlarged crop (default: the patch), e.g. ``Augmenter.crop_size``.
        regions: the values of each region (region datasets): forced crops pick a region first.

    Example:
        >>> sampler = PatchSampler(cases, (40, 56, 40), 2, crop_size=(90, 94, 88))  # doctest: +SKIP
        >>> specs = sampler.draw(np.random.default_rng(0))  # doctest: +SKIP
        >>> image, seg = sampler.crop(specs[0])  # doctest: +SKIP
        >>> image.shape, seg.shape  # doctest: +SKIP
        ((1, 90, 94, 88), (1, 90, 94, 88))
    """

    def __init__(
        self,
        cases: PreprocessedCases,
        patch_size: Sequence[int],
        batch_size: int,
        oversample_foreground: float = 0.33,
        crop_size: Sequence[int] | None = None,
        regions: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.cases = cases
        self.regions = [tuple(int(v) for v in r) for r in regions] if regions else None
        self.patch_size = tuple(int(p) for p in patch_size)
        self.crop_size = tuple(int(c) for c in crop_size) if crop_size is not None else self.patch_size
        self.batch_size = int(batch_size)
        self.oversample_foreground = float(oversample_foreground)
        problems = []
        if len(self.patch_size) not in (2, 3) or min(self.patch_size) < 1:
            problems.append(f"patch_size {self.patch_size} must be 2 or 3 positive sizes")
        if len(self.crop_size) != len(self.patch_size) or any(
            c < p for c, p in zip(self.crop_size, self.patch_size, strict=True)
        ):
            problems.append(f"crop_size {self.crop_size} must have one size >= the patch per axis")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= self.oversample_foreground <= 1.0:
            problems.append(f"oversample_foreground must be in [0, 1], got {oversample_foreground}")
        if problems:
            raise ValueError("PatchSampler: " + "; ".join(problems))
        self.num_forced = self.batch_size - round(self.batch_size * (1 - self.oversample_foreground))

    def __repr__(self) -> str:
        return (
            f"PatchSampler({len(self.cases.names)} cases, patch={self.patch_size}, crop={self.crop_size}, "
            f"batch_size={self.batch_size}, forced={self.num_forced})"
        )

    def _bounds(self, shape: Sequence[int]) -> tuple[list[int], list[int]]:
        """Lowest and highest crop start per axis (nnU-Net's ``get_bbox``)."""
        lbs, ubs = [], []
        for length, crop, patch in zip(shape, self.crop_size, self.patch_size, strict=True):
            need = crop - patch
            if need + length < crop:
                need = crop - length
            lbs.append(-need // 2)
            ubs.append(length + need // 2 + need % 2 - crop)
        return lbs, ubs

    def draw(self, rng: np.random.Generator) -> list[CropSpec]:
        """The crops of one batch (the random part: cases, forced classes, positions).

        Args:
            rng: the generator to draw from.

        Returns:
            ``batch_size`` crop specifications; the last :attr:`num_forced` force foreground.
        """
        specs = []
        for i in range(self.batch_size):
            name = self.cases.names[int(rng.integers(len(self.cases.names)))]
            force = i >= self.batch_size - self.num_forced
            specs.append(self._draw_one(name, force, rng))
        return specs

    def _draw_one(self, name: str, force: bool, rng: np.random.Generator) -> CropSpec:
        data, _, locations = self.cases.load(name)
        shape = data.shape[1:]
        planar = len(self.patch_size) == 2
        voxel, label = None, None
        if force:
            label, pool = self._forced_pool(locations, rng)
            if pool is not None:  # else: no foreground (nor annotation) at all, fall back to a random crop
                voxel = pool[int(rng.integers(len(pool)))]
        slice_index = None
        if planar:
            slice_index = int(voxel[0]) if voxel is not None else int(rng.integers(shape[0]))
            shape, voxel = shape[1:], (voxel[1:] if voxel is not None else None)
        lbs, ubs = self._bounds(shape)
        if voxel is None:
            start = tuple(int(rng.integers(lb, ub + 1)) for lb, ub in zip(lbs, ubs, strict=True))
        else:
            start = tuple(
                int(min(max(int(v) - c // 2, lb), ub))
                for v, c, lb, ub in zip(voxel, self.crop_size, lbs, ubs, strict=True)
            )
        return CropSpec(name, start, force, slice_index, label)

    def _forced_pool(
        self, locations: dict[int, np.ndarray], rng: np.random.Generator
    ) -> tuple[int | None, np.ndarray | None]:
        """(class or region index, its stored voxels) for a forced crop; (None, None) if there are none."""
        present = [k for k, v in locations.items() if len(v) > 0 and k != ANNOTATED]
        if present and self.regions is not None:
            regions = [i for i, r in enumerate(self.regions) if any(v in present for v in r)]
            if regions:
                index = regions[int(rng.integers(len(regions)))]
                return index, np.concatenate([locations[v] for v in self.regions[index] if v in present])
        if present:
            label = present[int(rng.integers(len(present)))]
            return label, locations[label]
        if len(locations.get(ANNOTATED, ())):
            return ANNOTATED, locations[ANNOTATED]
        return None, None

    def crop(self, spec: CropSpec, size: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read one crop (deterministic).

        Args:
            spec: from :meth:`draw`.
            size: read only the centred ``size`` part of the crop (offset
                ``(crop - size) // 2``), e.g. ``Augmenter.required_crop(params)``;
                default the whole crop.

        Returns:
            ``(image, seg)``: (C, *size) float32 padded with 0 and (1, *size) int8/int16
            padded with -1; in 2D the (y, x) crop of slice ``spec.slice_index``.
        """
        size = tuple(int(s) for s in size) if size is not None else self.crop_size
        if len(size) != len(self.crop_size) or any(s > c for s, c in zip(size, self.crop_size, strict=True)):
            raise ValueError(f"crop size {size} must fit in the crop {self.crop_size}")
        start = [s + (c - n) // 2 for s, c, n in zip(spec.start, self.crop_size, size, strict=True)]
        data, seg, _ = self.cases.load(spec.case)
        if spec.slice_index is not None:
            data, seg = data[:, spec.slice_index], seg[:, spec.slice_index]
        return _crop_pad(data, start, size, 0.0).astype(np.float32, copy=False), _crop_pad(
            seg, start, size, -1
        )


def patch_region(crop_size: Sequence[int], patch_size: Sequence[int]) -> tuple[slice, ...]:
    """The patch's place in a crop: ``slice((c - p) // 2, (c - p) // 2 + p)`` per axis."""
    return tuple(slice((c - p) // 2, (c - p) // 2 + p) for c, p in zip(crop_size, patch_size, strict=True))
