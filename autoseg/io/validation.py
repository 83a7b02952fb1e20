"""Validation of a raw dataset (nnU-Net v2 layout), listing every problem at once.

Three levels, each returning a list of :class:`Problem`:

- :func:`check_structure`: dataset.json, folders, naming, complete cases (no image opened);
- :func:`check_case_headers`: per case, from the headers: dimensionality, and that the channels
  and the label share one voxel grid (shape, spacing: errors; origin, direction: warnings);
- :func:`check_case_content`: per case, from the voxels: NaN/inf intensities, non-integer or
  undeclared label values.

:func:`load_and_check_case` runs the per-case levels on one read of the files and hands the
arrays on, so the fingerprint stage validates and measures a case in one pass.
:func:`validate_dataset` runs everything, the cases in parallel.

2D images are accepted: :class:`LoadedCase` gives them a leading z axis of size 1, and its
``geometry`` stays the file's 2D geometry (``geometry.ndim == 2``). 4D and vector images are errors.

NaN and infinite intensities are errors in every format (ITK's NIfTI reader hides them:
:mod:`autoseg.io.nonfinite` finds them in the file's bytes); with ``nonfinite=VALUE``
(``--allow-nonfinite VALUE``) they are replaced by VALUE, with a warning naming each file.

Example:
    >>> dataset = load_raw_dataset("/data/raw/Dataset004_Hippocampus")  # doctest: +SKIP
    >>> problems = validate_dataset(dataset)  # doctest: +SKIP
    >>> print(format_problems(problems))  # doctest: +SKIP
    0 errors, 0 warnings
    >>> raise_for_problems(problems)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from autoseg.io.case_checks import (
    case_files,
    check_case_content,
    check_case_headers,
    image_content,
    label_content,
    read_headers,
    reason,
    unsafe_files,
)
from autoseg.io.dataset import Case, RawDataset
from autoseg.io.images import Geometry, ImageReadError, read_image
from autoseg.io.nonfinite import count_nonfinite, replace_nonfinite
from autoseg.io.problems import (
    DatasetValidationError,
    Problem,
    error,
    format_problems,
    no_foreground_anywhere,
    raise_for_problems,
    relative,
    sort_problems,
)
from autoseg.io.structure import check_case_files, check_layout, check_structure
from autoseg.utils.parallel import parallel_map

__all__ = [
    "DatasetValidationError",
    "LoadedCase",
    "Problem",
    "check_case_content",
    "check_case_files",
    "check_case_headers",
    "check_structure",
    "format_problems",
    "load_and_check_case",
    "raise_for_problems",
    "validate_dataset",
]


@dataclass(frozen=True, eq=False)
class LoadedCase:
    """A validated case, read once.

    Attributes:
        name: the case identifier.
        images: (C, Z, Y, X) float32, channels in channel order (Z is 1 for a 2D dataset).
        label: (Z, Y, X) label values, uint8 as stored (a large CT's label stays 1 byte a
            voxel), else int16; None for a case without label.
        geometry: the geometry of channel 0, as in its file.
        replaced: channel file (relative to the dataset) -> non-finite voxels replaced in it.
    """

    name: str
    images: np.ndarray
    label: np.ndarray | None
    geometry: Geometry
    replaced: dict[str, int] = field(default_factory=dict)


def _to_loaded(
    case: Case, arrays: dict[Path, np.ndarray], geometry: Geometry, root: Path, nonfinite: float | None
) -> LoadedCase:
    def zyx(a: np.ndarray) -> np.ndarray:
        return a[None] if a.ndim == 2 else a

    replaced = {}
    if nonfinite is not None:
        for p in case.images:
            count = sum(count_nonfinite(arrays[p]).values())
            if count:
                replaced[relative(p, root)] = count
                arrays[p] = replace_nonfinite(arrays[p], nonfinite)
    # one float32 array, each channel cast into it and its file's array dropped (``arrays`` is the
    # caller's scratch): no second full-size copy while a large case is read
    shape = zyx(arrays[case.images[0]]).shape
    images = np.empty((len(case.images), *shape), dtype=np.float32)
    for c, p in enumerate(case.images):
        images[c] = zyx(arrays.pop(p))
    label = None
    if case.label is not None:
        raw = zyx(arrays.pop(case.label))
        small = raw.dtype == np.uint8
        label = raw if small else (np.rint(raw) if raw.dtype.kind == "f" else raw).astype(np.int16)
    return LoadedCase(name=case.name, images=images, label=label, geometry=geometry, replaced=replaced)


def load_and_check_case(
    case: Case, dataset: RawDataset, nonfinite: float | None = None
) -> tuple[LoadedCase | None, list[Problem]]:
    """Validate a case and read it, with one read of every file.

    Checks the files (:func:`check_case_files`), then the headers, then reads the voxels (an
    unreadable or truncated file is an error problem, not an exception: see
    :mod:`autoseg.io.integrity` for files the readers accept truncated) and checks them.
    Files outside the dataset folder are never opened.

    Args:
        case: the case.
        dataset: its dataset.
        nonfinite: replace NaN and infinite intensities by this value (a warning per file)
            instead of reporting them as errors.

    Returns:
        The loaded case (None if any error was found) and every problem found, errors first.

    Example:
        >>> loaded, problems = load_and_check_case(dataset.cases[0], dataset)  # doctest: +SKIP
        >>> loaded.images.shape  # (C, Z, Y, X)  # doctest: +SKIP
        (1, 36, 50, 35)
    """
    root = dataset.root
    problems = check_case_files(case, dataset)
    geoms, found = read_headers(case, root, skip=unsafe_files(case, root))
    problems += found
    arrays: dict[Path, np.ndarray] = {}
    for role, path in case_files(case):
        if path not in geoms:
            continue
        try:
            arrays[path], _ = read_image(path)  # raises on files cut short (see autoseg.io.integrity)
            cut = None
        except ImageReadError as err:
            cut = reason(err)
        if cut is not None:
            msg = f"cannot read the image data ({cut}); the file is truncated or damaged: export it again"
            problems.append(error(relative(path, root), msg))
            arrays.pop(path, None)
            continue
        if role == "label":
            problems += label_content(path, arrays[path], dataset)
        else:
            problems += image_content(path, arrays[path], root, nonfinite)
    problems = sort_problems(problems)
    if any(p.severity == "error" for p in problems) or not case.images:
        return None, problems
    return _to_loaded(case, arrays, geoms[case.images[0]], root, nonfinite), problems


def _validate_case(case: Case, dataset: RawDataset, check_content: bool) -> list[Problem]:
    if check_content:
        return load_and_check_case(case, dataset)[1]
    return check_case_files(case, dataset) + check_case_headers(case, dataset)


def validate_dataset(
    dataset: RawDataset, num_workers: int | None = None, check_content: bool = True
) -> list[Problem]:
    """Run every check on a dataset: its layout, then each case (in worker processes).

    The problems come dataset-level first, then case by case (errors before warnings).

    Args:
        dataset: as returned by :func:`autoseg.io.dataset.load_raw_dataset`.
        num_workers: worker processes (None: all cores; 0 or 1: in this process).
        check_content: also read the voxels (NaN/inf, label values); False reads headers only.

    Returns:
        Every problem, errors first, without duplicates; no error means the dataset is usable.
    """
    problems = check_layout(dataset)  # each case's files are checked with the case, below
    # The workers get the dataset without its case list and description: each task pickles little.
    light = replace(dataset, cases=(), description={})
    per_case = parallel_map(
        partial(_validate_case, dataset=light, check_content=check_content),
        dataset.cases,
        num_workers=num_workers,
        desc="validate",
    )
    problems += [p for found in per_case for p in found]
    problems += no_foreground_anywhere(problems, sum(c.label is not None for c in dataset.cases))
    return sort_problems(problems)
