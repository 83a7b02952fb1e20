"""Per-case checks of a raw dataset: file headers (geometry) and voxel content.

Public through :mod:`autoseg.io.validation`, which runs them on one read of each case.

Dimensionality: 3D scalar images are the norm; 2D scalar images are accepted too (nnU-Net
supports 2D datasets). 4D and vector (multi-component, e.g. RGB) images are errors: each
channel must be its own file. Shape and spacing must agree between the channels and the label
(errors); origin and direction differences are warnings, as in nnU-Net's
``--verify_dataset_integrity``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.io.dataset import Case, RawDataset
from autoseg.io.images import Geometry, ImageReadError, read_geometry
from autoseg.io.nonfinite import count_nonfinite, describe
from autoseg.io.problems import NO_FOREGROUND, Problem, error, relative, warning
from autoseg.io.structure import escapes, missing_file

SPACING_RTOL = 1e-4  # spacings within 0.01 % of each other are equal
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-4
MAX_LISTED_VALUES = 20


def reason(err: Exception) -> str:
    """The last line of the underlying error (SimpleITK's messages are long)."""
    cause = err.__cause__ or err
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    return lines[-1] if lines else type(cause).__name__


def case_files(case: Case) -> list[tuple[str, Path]]:
    """``(role, path)`` of every file of a case, channels in order then the label."""
    files = [(f"channel {c}", p) for c, p in sorted(case.channel_files.items())]
    return files + ([("label", case.label)] if case.label is not None else [])


def unsafe_files(case: Case, root: Path) -> set[Path]:
    """Files never to open: those outside the dataset folder (check_case_files reports them)."""
    return {path for _, path in case_files(case) if escapes(path, root)}


def _fmt(values: tuple[float, ...] | tuple[int, ...] | list[float] | list[int]) -> str:
    return "(" + ", ".join(f"{v + 0.0:g}" for v in values) + ")"  # + 0.0 turns -0.0 into 0


def _file_header(path: Path, role: str, root: Path) -> tuple[Geometry | None, list[Problem]]:
    """Read one header; the geometry is None when the file is unusable."""
    rel = relative(path, root)
    if not path.is_file():
        return None, [missing_file(path, root)]
    try:
        geom, components = read_geometry(path)
    except ImageReadError as err:
        msg = f"cannot read the image header ({reason(err)})"
        return None, [
            error(rel, msg + "; the file is damaged or not an image of its ending: export it again")
        ]
    problems = []
    if components != 1:
        what = "a label map" if role == "label" else "each channel"
        msg = f"vector image with {components} components per voxel; {what} must be a scalar image"
        problems.append(
            error(rel, msg + ": store each component as its own channel file (_0000, _0001, ...)")
        )
    if geom.ndim not in (2, 3):
        msg = f"{geom.ndim}D image of shape {geom.shape}; expected a 3D (or 2D) image"
        problems.append(error(rel, msg + ": split it into one file per channel (_0000, _0001, ...)"))
    if not all(np.isfinite(s) and s > 0 for s in geom.spacing):
        problems.append(error(rel, f"spacing {_fmt(geom.spacing)} is not positive; fix the file's header"))
    return (None if problems else geom), problems


def _compare(rel: str, geom: Geometry, ref_rel: str, ref: Geometry) -> list[Problem]:
    """Compare a file's geometry with the case's reference file (its first channel)."""
    fix = f"every channel and the label of a case must share one voxel grid: resample {rel} onto {ref_rel}"
    if geom.shape != ref.shape:
        axes = "(z, y, x)" if geom.ndim == 3 else "(y, x)"
        return [error(rel, f"shape {geom.shape} {axes} differs from {ref_rel} {ref.shape}; {fix}")]
    if not np.allclose(geom.spacing, ref.spacing, rtol=SPACING_RTOL, atol=0):
        return [
            error(rel, f"spacing {_fmt(geom.spacing)} mm differs from {ref_rel} {_fmt(ref.spacing)}; {fix}")
        ]
    problems = []
    check = "check them overlaid (e.g. in ITK-SNAP); autoseg pairs the voxels as they are"
    if not np.allclose(geom.origin, ref.origin, rtol=1e-5, atol=ORIGIN_ATOL_MM):
        msg = f"origin {_fmt(geom.origin)} differs from {ref_rel} {_fmt(ref.origin)}"
        problems.append(warning(rel, f"{msg}; {check}"))
    if not np.allclose(geom.direction, ref.direction, rtol=0, atol=DIRECTION_ATOL):
        msg = f"direction {_fmt(geom.direction)} differs from {ref_rel} {_fmt(ref.direction)}"
        problems.append(warning(rel, f"{msg}; {check}"))
    return problems


def read_headers(case: Case, root: Path, skip: set[Path]) -> tuple[dict[Path, Geometry], list[Problem]]:
    """Read and compare the headers of a case's files, except those in ``skip``.

    Returns:
        The geometry of every usable file (readable, scalar, 2D or 3D) and the problems found.
    """
    geoms: dict[Path, Geometry] = {}
    problems: list[Problem] = []
    for role, path in case_files(case):
        if path not in skip:
            geom, found = _file_header(path, role, root)
            problems += found
            if geom is not None:
                geoms[path] = geom
    ref_path = case.images[0] if case.images else None
    if ref_path in geoms:
        for path, geom in geoms.items():
            if path != ref_path:
                problems += _compare(relative(path, root), geom, relative(ref_path, root), geoms[ref_path])
    return geoms, problems


def check_case_headers(case: Case, dataset: RawDataset) -> list[Problem]:
    """Check a case from its file headers only (cheap: no voxel data is read).

    Args:
        case: the case to check.
        dataset: its dataset (for the root, to name files relative to it).

    Returns:
        Unreadable headers, 4D or vector images, shape/spacing mismatches between the channels
        and the label (errors), origin/direction mismatches (warnings). Files outside the
        dataset folder are skipped (:func:`autoseg.io.structure.check_case_files` reports them).
    """
    return read_headers(case, dataset.root, skip=unsafe_files(case, dataset.root))[1]


def image_content(
    path: Path, image: np.ndarray, root: Path, replace_with: float | None = None
) -> list[Problem]:
    """NaN and infinite intensities of one channel file, with their counts.

    An error, or with ``replace_with`` a warning that says they are replaced by that value.
    """
    counts = count_nonfinite(image)
    if not counts:
        return []
    found = describe(counts, image.size)
    if replace_with is not None:
        return [warning(relative(path, root), f"{found} replaced by {replace_with:g} (--allow-nonfinite)")]
    fix = "replace them with finite values, or rerun with --allow-nonfinite VALUE to replace them by VALUE"
    return [error(relative(path, root), f"{found}; {fix}")]


def _listed(values: list[int] | list[float]) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:MAX_LISTED_VALUES])
    more = f", ... ({len(values) - MAX_LISTED_VALUES} more)" if len(values) > MAX_LISTED_VALUES else ""
    return f"[{shown}{more}]"


#: voxels per bincount call in :func:`_unique_ints` (its int64 copy: 32 MiB)
BINCOUNT_CHUNK = 1 << 22


def _unique_ints(label: np.ndarray) -> list[int]:
    """The distinct values of an integer array (bincount when the range is small: faster than sorting)."""
    if label.size == 0:
        return []
    low, high = int(label.min()), int(label.max())
    if low >= 0 and high < 1 << 16:
        # in chunks: bincount casts to int64, 8 bytes a voxel (800 MiB for a 512 x 512 x 400 CT)
        flat, counts = label.reshape(-1), np.zeros(high + 1, dtype=np.int64)
        for start in range(0, flat.size, BINCOUNT_CHUNK):
            counts += np.bincount(flat[start : start + BINCOUNT_CHUNK], minlength=high + 1)
        return np.flatnonzero(counts).tolist()
    return np.unique(label).astype(np.int64).tolist()


def _float_label(rel: str, label: np.ndarray) -> tuple[list[int], list[Problem]]:
    """The integral values of a float label map, and problems for NaN or fractional values."""
    problems = []
    finite = np.isfinite(label)
    if not finite.all():
        msg = f"{int((~finite).sum())} NaN or infinite voxels in a label map"
        problems.append(error(rel, msg + "; set them to a label value (e.g. 0, background)"))
    values = label[finite]
    fractional = values != np.round(values)
    if fractional.any():
        examples = _listed(np.unique(values[fractional])[:5].tolist())
        msg = f"{int(fractional.sum())} voxels have non-integer label values (e.g. {examples})"
        fix = "export the label map without interpolation (nearest neighbour), as an integer type"
        problems.append(error(rel, f"{msg}; {fix}"))
    return _unique_ints(np.round(values[~fractional]).astype(np.int64)), problems


def label_content(path: Path, label: np.ndarray, dataset: RawDataset) -> list[Problem]:
    """NaN, fractional or undeclared values in one label file."""
    rel = relative(path, dataset.root)
    problems: list[Problem] = []
    if label.dtype.kind == "f":
        found, problems = _float_label(rel, label)
    elif label.dtype.kind in "iu":
        found = _unique_ints(label)
    else:
        return [error(rel, f"label map of type {label.dtype}; store it as integers")]
    if found and all(v == 0 for v in found):
        problems.append(warning(rel, NO_FOREGROUND + "; the case teaches only background"))
    declared = dataset.label_values
    undeclared = sorted(set(found) - set(declared))
    if declared and undeclared:
        msg = f'label values {_listed(undeclared)} are not declared in dataset.json "labels"'
        fix = 'add them to "labels" or fix the label file'
        problems.append(error(rel, f"{msg} (declared: {', '.join(map(str, declared))}); {fix}"))
    elif found and not declared and (found[0] < -(2**15) or found[-1] >= 2**15):
        problems.append(error(rel, f"label values {_listed([found[0], found[-1]])} do not fit int16"))
    return problems


def check_case_content(
    case: Case, dataset: RawDataset, images: list[np.ndarray], label: np.ndarray | None
) -> list[Problem]:
    """Check a case's voxels: finite intensities, integer and declared label values.

    Args:
        case: the case the arrays were read from.
        dataset: its dataset (declared labels, root).
        images: one array per channel, in ``case.images`` order.
        label: the label array, or None.

    Returns:
        NaN/inf intensities (per channel file, with counts), NaN or fractional label values,
        label values that dataset.json does not declare.
    """
    problems = []
    for path, image in zip(case.images, images, strict=False):
        problems += image_content(path, image, dataset.root)
    if label is not None and case.label is not None:
        problems += label_content(case.label, label, dataset)
    return problems
