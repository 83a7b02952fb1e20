"""The consistency checks of a DICOM image series: can its slices form one regular volume?

:func:`series_problems` lists every reason a series' headers do not form a volume (multi-frame
instances, missing geometry tags, mixed sizes/orientations/spacings, a single slice, duplicate
positions, missing slices, varying spacing, gantry tilt); :func:`slice_positions` orders the
slices along their normal. :mod:`autoseg.io.dicom` runs them before reading a series and
re-exports these names.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydicom.dataset import Dataset

_REQUIRED = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
DUPLICATE_MM = 0.01  #: slices closer than this along the normal share a position
GAP_FACTOR = 1.5  #: a step this many times the median step means missing slices
GRID_TOLERANCE = 0.1  #: slices may lie this fraction of a step off a uniform grid


def _counts(values: list) -> str:
    return ", ".join(f"{n} x {v}" for v, n in Counter(values).most_common())


def _mixed(headers: list[Dataset]) -> list[str]:
    problems = []
    sizes = [(int(h.Rows), int(h.Columns)) for h in headers]
    if len(set(sizes)) > 1:
        problems.append(f"mixed image sizes (rows, columns): {_counts(sizes)}")
    iops = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
    if np.abs(iops - iops[0]).max() > 1e-3:
        problems.append(f"mixed orientations: {_counts([tuple(np.round(o, 3).tolist()) for o in iops])}")
    spacings = np.array([[float(v) for v in h.PixelSpacing] for h in headers])
    if np.abs(spacings - spacings[0]).max() > 1e-3 * spacings[0].max():
        listed = _counts([tuple(np.round(s, 4).tolist()) for s in spacings])
        problems.append(f"mixed pixel spacings: {listed}")
    return problems


def slice_positions(headers: list[Dataset]) -> tuple[list[int], np.ndarray]:
    """The order of ``headers`` along the slice normal, and each sorted slice's position on it (mm)."""
    iop = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    along = np.array([np.asarray(h.ImagePositionPatient, dtype=float) @ normal for h in headers])
    order = np.argsort(along, kind="stable")
    return [int(i) for i in order], along[order]


def _spacing_problems(headers: list[Dataset]) -> list[str]:
    order, along = slice_positions(headers)
    steps = np.diff(along)
    problems = []
    duplicates = int((steps < DUPLICATE_MM).sum())
    if duplicates:
        problems.append(
            f"{duplicates} duplicate slice position(s) (several echoes, phases or time points in one "
            "series?); export them as separate series"
        )
    real = steps[steps >= DUPLICATE_MM]
    if real.size == 0:
        return problems
    median = float(np.median(real))
    gaps = real[real > GAP_FACTOR * median]
    if gaps.size:
        missing = int(sum(round(g / median) - 1 for g in gaps))
        problems.append(
            f"missing slices: {gaps.size} gap(s) of up to {gaps.max():.4g} mm where the usual step is "
            f"{median:.4g} mm (about {missing} slice(s) missing); export the complete series"
        )
    elif not duplicates:
        uniform = np.linspace(along[0], along[-1], len(along))
        off = float(np.abs(along - uniform).max())
        if off > GRID_TOLERANCE * median:
            problems.append(
                f"varying spacing between slices: steps from {real.min():.4g} to {real.max():.4g} mm "
                f"(a slice lies {off:.3g} mm off a uniform grid); export with uniform spacing"
            )
    iop = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    drift = np.asarray(headers[order[-1]].ImagePositionPatient, float) - np.asarray(
        headers[order[0]].ImagePositionPatient, float
    )
    shift = float(np.linalg.norm(drift - (drift @ normal) * normal))
    if shift > 0.5 * min(float(v) for v in headers[0].PixelSpacing):
        problems.append(
            f"the slices shift {shift:.3g} mm within their plane from first to last (gantry tilt?); "
            "such a sheared volume must be resampled first"
        )
    return problems


def series_problems(headers: list[Dataset]) -> list[str]:
    """Everything that stops ``headers`` (one series' instances) from forming a regular volume.

    Checked: no multi-frame instances; the geometry tags are present; one image size, one
    orientation and one pixel spacing; at least two slices; no duplicate positions; no gap
    larger than 1.5x the median step (missing slices); every slice within 10% of a step of a
    uniform grid (else varying spacing); slices stacked along the normal (no gantry tilt).

    Returns:
        One message per problem; empty for a good series.
    """
    multi = sum(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers)
    if multi:
        return [f"{multi} multi-frame (enhanced) instance(s): not supported; export single-frame images"]
    missing = [t for t in _REQUIRED if any(h.get(t) in (None, "") for h in headers)]
    if missing:
        return [f"instances lack {', '.join(missing)}: not a volume with a known geometry"]
    problems = _mixed(headers)
    if problems:
        return problems
    if len(headers) < 2:
        return ["a single slice: 2D images are not supported (a volume needs at least 2 slices)"]
    return _spacing_problems(headers)
