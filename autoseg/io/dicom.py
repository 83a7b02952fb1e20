"""DICOM image series in: find every series under a folder, check it, read it as a volume.

:func:`find_series` reads headers only and groups image instances by SeriesInstanceUID;
objects that are not images (SEG, SR, RTSTRUCT, presentation states, ...) and files that
are not DICOM are skipped with a note. :func:`read_series` checks a series' slices (the
rules of :func:`series_problems`, in :mod:`autoseg.io.dicom_checks`), sorts them along the
slice normal and returns a float32 (z, y, x) volume with rescale slope and intercept applied
(CT in HU) and the :class:`~autoseg.io.images.Geometry` that SimpleITK's ImageSeriesReader would
give. Messages name the series by number, description and folder, never by anything that
identifies the patient.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from autoseg.io.dicom_checks import DUPLICATE_MM as DUPLICATE_MM  # re-exported with the checks
from autoseg.io.dicom_checks import GAP_FACTOR as GAP_FACTOR
from autoseg.io.dicom_checks import GRID_TOLERANCE as GRID_TOLERANCE
from autoseg.io.dicom_checks import series_problems, slice_positions
from autoseg.io.images import Geometry

#: SOP class UIDs (and their dotted sub-classes) that are never image volumes.
NON_IMAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture (screenshots)
    "1.2.840.10008.5.1.4.1.1.9",  # waveforms
    "1.2.840.10008.5.1.4.1.1.11",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, SEG, registrations, fiducials, surfaces
    "1.2.840.10008.5.1.4.1.1.88",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.104",  # encapsulated PDF/CDA
    "1.2.840.10008.5.1.4.1.1.481",  # RT objects (RTSTRUCT, RTPLAN, RTDOSE, ...)
    "1.2.840.10008.1.3.10",  # DICOMDIR
)
_GROUPING_TAGS = ["SOPClassUID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality", "Rows"]


class DicomSeriesError(ValueError):
    """A series that cannot be read as a volume; ``problems`` lists every reason found."""

    def __init__(self, series: DicomSeries, problems: list[str]) -> None:
        self.series = series
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{series.label}: {n} problem{'s' if n > 1 else ''}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class DicomSeries:
    """One image series found on disk (headers only; nothing is checked yet).

    Attributes:
        uid: the SeriesInstanceUID.
        description: SeriesDescription, or ``""``.
        modality: e.g. ``"CT"``, ``"MR"``.
        number: SeriesNumber, or None.
        files: its instance files, sorted by path.
        folder: the folder holding the files, relative to the folder searched (``"."`` for itself).
    """

    uid: str
    description: str
    modality: str
    number: int | None
    files: tuple[Path, ...]
    folder: str

    @property
    def num_instances(self) -> int:
        return len(self.files)

    @property
    def label(self) -> str:
        """How messages name the series: ``series 11 'T1post' in study3 (uid 1.2.3)``."""
        number = f" {self.number}" if self.number is not None else ""
        desc = f" {self.description!r}" if self.description else ""
        return f"series{number}{desc} in {self.folder} (uid {self.uid})"


@contextmanager
def quiet() -> Iterator[None]:
    """Silence pydicom/highdicom warnings: some quote header values, patient names included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def series_output_name(series: DicomSeries) -> str:
    """A file-name-safe name from the SeriesInstanceUID (dots kept), never from patient data.

    Example:
        >>> s = DicomSeries("1.2.826.0.1.3680043.2.1125.1", "", "MR", 1, (), ".")
        >>> series_output_name(s)
        '1.2.826.0.1.3680043.2.1125.1'
    """
    name = re.sub(r"[^0-9A-Za-z.\-]", "_", series.uid.strip()).strip(".")
    return name or "series_unknown"


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file (also without preamble), or None when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with quiet():
        try:
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_GROUPING_TAGS)
        except InvalidDicomError:
            pass
        except Exception:
            return None
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_GROUPING_TAGS)
            return ds if "SOPClassUID" in ds else None
        except Exception:
            return None


def _object_kind(ds: Dataset) -> str | None:
    """Why ``ds`` is not part of an image series (``"Segmentation Storage"``), or None for an image."""
    from pydicom.uid import UID

    sop = str(ds.get("SOPClassUID", ""))
    if any(sop == p or sop.startswith(p + ".") for p in NON_IMAGE_SOP_CLASSES):
        return UID(sop).name
    if "Rows" not in ds:
        return f"{UID(sop).name} (no pixel data)" if sop else "object without pixel data"
    if not ds.get("SeriesInstanceUID"):
        return "image without SeriesInstanceUID"
    return None


def _relative(path: Path, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return Path(rel).as_posix()


def find_series(folder: str | os.PathLike[str]) -> tuple[list[DicomSeries], list[str]]:
    """Every image series under ``folder`` (searched recursively), and notes on what was skipped.

    Returns:
        The series sorted by folder, series number and UID, and notes such as
        ``"sub: skipped 1 Segmentation Storage object (not an image series)"``
        (folders relative to ``folder``; never patient data).

    Raises:
        FileNotFoundError: ``folder`` is not a folder.

    Example:
        >>> series, notes = find_series("study/")  # doctest: +SKIP
        >>> [(s.modality, s.num_instances) for s in series]  # doctest: +SKIP
        [('CT', 3)]
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"DICOM folder {root} does not exist or is not a folder: give the folder holding the DICOM files"
        )
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    skipped: Counter[tuple[str, str]] = Counter()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            ds = _read_header(path)
            kind = "" if ds is None else _object_kind(ds)
            if ds is None or kind is not None:
                skipped[(_relative(Path(dirpath), root), str(kind))] += 1
                continue
            groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    series = [_make_series(uid, members, root) for uid, members in groups.items()]
    series.sort(key=lambda s: (s.folder, s.number if s.number is not None else -1, s.uid))
    notes = [_note(rel, kind, n) for (rel, kind), n in sorted(skipped.items())]
    return series, notes


def _note(folder: str, kind: str, n: int) -> str:
    if not kind:
        return f"{folder}: ignored {n} file{'s' if n > 1 else ''} that {'are' if n > 1 else 'is'} not DICOM"
    return f"{folder}: skipped {n} {kind} object{'s' if n > 1 else ''} (not an image series)"


def _make_series(uid: str, members: list[tuple[Path, Dataset]], root: Path) -> DicomSeries:
    first = members[0][1]
    files = tuple(sorted(p for p, _ in members))
    number = first.get("SeriesNumber")
    common = Path(os.path.commonpath([str(p.parent) for p in files]))
    return DicomSeries(
        uid=uid,
        description=str(first.get("SeriesDescription", "") or ""),
        modality=str(first.get("Modality", "") or ""),
        number=int(number) if number not in (None, "") else None,
        files=files,
        folder=_relative(common, root),
    )


def read_headers(series: DicomSeries) -> list[Dataset]:
    """Full headers (no pixel data) of every instance, in ``series.files`` order."""
    import pydicom

    with quiet():
        return [pydicom.dcmread(f, stop_before_pixels=True, force=True) for f in series.files]


def series_geometry(series: DicomSeries) -> tuple[list[int], list[Dataset], Geometry]:
    """Check the series and compute its volume geometry from the headers alone.

    Returns:
        The order of ``series.files`` along the slice normal (index list, first slice first),
        the headers in that order, and the geometry (z, y, x) as SimpleITK would give it.

    Raises:
        DicomSeriesError: listing every problem of the series.
    """
    headers = read_headers(series)
    problems = series_problems(headers)
    if problems:
        raise DicomSeriesError(series, problems)
    order, along = slice_positions(headers)
    headers = [headers[i] for i in order]
    first = headers[0]
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    step = (along[-1] - along[0]) / (len(along) - 1)
    dy, dx = (float(v) for v in first.PixelSpacing)
    direction = np.column_stack([row_dir, col_dir, normal])
    geometry = Geometry(
        shape=(len(headers), int(first.Rows), int(first.Columns)),
        spacing=(float(step), dy, dx),
        origin=tuple(float(v) for v in first.ImagePositionPatient),
        direction=tuple(float(v) for v in direction.reshape(-1)),
    )
    return order, headers, geometry


def read_series(series: DicomSeries) -> tuple[np.ndarray, Geometry]:
    """Read a checked series as a float32 (z, y, x) volume with rescale slope/intercept applied.

    Slices are ordered by their position along the slice normal (not by InstanceNumber);
    the slice spacing comes from the positions (not SliceThickness).

    Raises:
        DicomSeriesError: the series is inconsistent or its pixels cannot be decoded.

    Example:
        >>> volume, geometry = read_series(series)  # doctest: +SKIP
        >>> volume.shape == geometry.shape  # doctest: +SKIP
        True
    """
    import SimpleITK as sitk

    order, _, geometry = series_geometry(series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(series.files[i]) for i in order])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise DicomSeriesError(series, [f"pixel data cannot be decoded ({reason})"]) from err
    array = sitk.GetArrayFromImage(image)
    if tuple(array.shape) != geometry.shape:
        raise DicomSeriesError(series, [f"read {array.shape} voxels, expected {geometry.shape}"])
    return array.astype(np.float32, copy=False), geometry


def read_all(
    folder: str | os.PathLike[str],
) -> tuple[list[tuple[DicomSeries, np.ndarray, Geometry]], list[str], list[tuple[DicomSeries, str]]]:
    """Read every image series under ``folder``; a bad series does not stop the others.

    Returns:
        ``(volumes, notes, errors)``: ``(series, array (z, y, x), geometry)`` per good series,
        the notes of :func:`find_series`, and ``(series, message)`` per series that failed.

    Example:
        >>> volumes, notes, errors = read_all("study/")  # doctest: +SKIP
    """
    series, notes = find_series(folder)
    volumes: list[tuple[DicomSeries, np.ndarray, Geometry]] = []
    errors: list[tuple[DicomSeries, str]] = []
    for s in series:
        try:
            array, geometry = read_series(s)
        except DicomSeriesError as err:
            errors.append((s, str(err)))
            continue
        volumes.append((s, array, geometry))
    return volumes, notes, errors
