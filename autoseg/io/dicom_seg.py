"""DICOM-SEG out and in, through highdicom.

:func:`write_dicom_seg` stores a label map predicted on a DICOM series as a standard binary
Segmentation object (one segment per label, segment number = label value) that references
the source series' instances and lies on its slices. :func:`read_dicom_seg` turns a SEG back
into a label map: on the source series' grid when the series is given (frames are placed by
their position, so SEGs that omit empty frames or list frames in any order read exactly), or
on the grid highdicom reconstructs from the frames otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.io.dicom import DicomSeries, quiet, series_geometry
from autoseg.io.images import Geometry
from autoseg.utils.files import atomic_path

#: Type 2 attributes highdicom copies from the source; absent in some anonymised data.
_PATIENT_STUDY_TAGS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
#: Display colours (RGB) of segments 1, 2, ...; repeated beyond the last.
_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180))


def _segment_descriptions(labels: dict[int, str], algorithm_name: str, version: str) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=version
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=value,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*_PALETTE[(value - 1) % len(_PALETTE)]),
        )
        for value, name in sorted(labels.items())
    ]


def _foreground_labels(mask: np.ndarray, labels: dict[int, str], path: Path) -> dict[int, str]:
    fg = {int(v): str(n) for v, n in labels.items() if int(v) != 0}
    if sorted(fg) != list(range(1, len(fg) + 1)):
        raise ValueError(
            f"{path}: DICOM-SEG segment numbers must be 1..N, got label values {sorted(fg)}; "
            "renumber the labels consecutively from 1"
        )
    unknown = sorted(set(np.unique(mask).tolist()) - set(fg) - {0})
    if unknown:
        raise ValueError(f"{path}: the mask holds values {unknown} that are not in labels {sorted(fg)}")
    return fg


def write_dicom_seg(
    mask: np.ndarray,
    series: DicomSeries,
    labels: dict[int, str],
    path: str | os.PathLike[str],
    algorithm_name: str = "autoseg",
    version: str | None = None,
) -> Path:
    """Write ``mask`` (z, y, x integer label map on ``series``' grid) as a DICOM-SEG, atomically.

    Every foreground label of ``labels`` (value -> name, values 1..N; 0 is ignored) becomes a
    binary segment with that number, whether or not the mask contains it; empty frames are
    omitted. Patient and study attributes are copied from the source (as the SEG IOD needs).

    Returns:
        ``path``.

    Raises:
        DicomSeriesError: the source series is inconsistent.
        ValueError: the mask's shape differs from the series' or it holds unknown labels.

    Example:
        >>> write_dicom_seg(mask, series, {1: "liver"}, "out/liver_seg.dcm")  # doctest: +SKIP
        PosixPath('out/liver_seg.dcm')
    """
    import autoseg

    path = Path(path)
    _, headers, geometry = series_geometry(series)
    if tuple(mask.shape) != geometry.shape:
        raise ValueError(f"{path}: mask shape {mask.shape} differs from the series' shape {geometry.shape}")
    if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.bool_):
        raise ValueError(f"{path}: the mask must be an integer label map, got dtype {mask.dtype}")
    fg = _foreground_labels(mask, labels, path)
    for header in headers:
        for tag in _PATIENT_STUDY_TAGS:
            if tag not in header:
                setattr(header, tag, None)
        if header.get("SliceThickness") in (None, ""):  # type 2, often empty; highdicom needs a value
            header.SliceThickness = round(float(geometry.spacing[0]), 6)
    with quiet():
        seg = _segmentation(headers, mask, fg, series, algorithm_name, version or autoseg.__version__)
        with atomic_path(path, suffix=".dcm") as tmp:
            seg.save_as(tmp)
    return path


def _segmentation(
    headers: list[Any],
    mask: np.ndarray,
    fg: dict[int, str],
    series: DicomSeries,
    algorithm: str,
    version: str,
) -> Any:
    import highdicom as hd

    return hd.seg.Segmentation(
        source_images=headers,
        pixel_array=np.ascontiguousarray(mask.astype(np.uint8 if len(fg) < 256 else np.uint16)),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(fg, algorithm, version),
        series_instance_uid=hd.UID(),
        series_number=(series.number or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=algorithm,
        manufacturer_model_name=algorithm,
        software_versions=version,
        device_serial_number="0",
        content_label="AUTOSEG",
        content_description=f"{algorithm} segmentation",
        series_description=f"{algorithm} segmentation",
        omit_empty_frames=bool(mask.any()),  # an all-empty SEG keeps its frames (highdicom needs one)
        specific_character_set=headers[0].get("SpecificCharacterSet") or None,
    )


def _item(seg: Any, frame: int, group: str) -> Any:
    """``group``'s first item for ``frame``: from the per-frame groups, else the shared ones."""
    per_frame = seg.PerFrameFunctionalGroupsSequence[frame]
    if group in per_frame:
        return per_frame[group].value[0]
    return seg.SharedFunctionalGroupsSequence[0][group].value[0]


def _frames_onto(seg: Any, geometry: Geometry, path: Path) -> np.ndarray:
    """Place every frame of ``seg`` on the slice of ``geometry`` it lies on; a label map (z, y, x)."""
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    to_index = np.linalg.inv(direction @ np.diag(geometry.spacing[::-1]))
    origin = np.asarray(geometry.origin, dtype=float)
    try:
        pixels = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    except Exception as err:
        raise ValueError(f"{path}: the SEG's frames cannot be decoded ({type(err).__name__}: {err})") from err
    kind = str(seg.SegmentationType)
    threshold = float(seg.get("MaximumFractionalValue", 1)) / 2 if kind == "FRACTIONAL" else 0.5
    out = np.zeros(geometry.shape, dtype=np.uint8 if len(seg.SegmentSequence) < 256 else np.uint16)

    def number(f: int) -> int:  # LABELMAP frames hold the segment numbers as pixel values
        if kind == "LABELMAP":
            return 0
        return int(_item(seg, f, "SegmentIdentificationSequence").ReferencedSegmentNumber)

    for f in sorted(range(pixels.shape[0]), key=number):
        iop = np.asarray(_item(seg, f, "PlaneOrientationSequence").ImageOrientationPatient, dtype=float)
        spacing = np.asarray(_item(seg, f, "PixelMeasuresSequence").PixelSpacing, dtype=float)
        ipp = np.asarray(_item(seg, f, "PlanePositionSequence").ImagePositionPatient, dtype=float)
        x, y, z = to_index @ (ipp - origin)
        aligned = np.allclose(iop, np.concatenate([direction[:, 0], direction[:, 1]]), atol=1e-3)
        aligned &= np.allclose(spacing, geometry.spacing[1:], rtol=1e-3)
        aligned &= max(abs(v - round(v)) for v in (x, y)) < 1e-2 and abs(z - round(z)) < 0.1
        if not aligned or not 0 <= round(z) < geometry.shape[0]:
            raise ValueError(
                f"{path}: frame {f + 1} does not lie on a slice of the given series (position, orientation "
                "or pixel spacing differ); read it without the series to get its own grid"
            )
        values = pixels[f] if kind == "LABELMAP" else (pixels[f] >= threshold) * number(f)
        _paste(out[round(z)], values.astype(out.dtype), round(y), round(x), path)
    return out


def _paste(target: np.ndarray, values: np.ndarray, row: int, col: int, path: Path) -> None:
    """Copy the non-zero ``values`` into ``target`` with their corner at (``row``, ``col``)."""
    rows, cols = target.shape
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = max(min(row + values.shape[0], rows), r0), max(min(col + values.shape[1], cols), c0)
    inside = values[r0 - row : r1 - row, c0 - col : c1 - col]
    if np.count_nonzero(inside) != np.count_nonzero(values):
        raise ValueError(f"{path}: part of the segmentation lies outside the given series' slices")
    np.copyto(target[r0:r1, c0:c1], inside, where=inside > 0)


def _own_grid(seg: Any, numbers: list[int]) -> tuple[np.ndarray, Geometry]:
    volume = seg.get_volume(segment_numbers=numbers, combine_segments=False, allow_missing_positions=True)
    array = volume.array if volume.array.ndim == 4 else volume.array[..., None]
    out = np.zeros(array.shape[:3], dtype=np.uint8 if max(numbers) < 256 else np.uint16)
    for i, number in enumerate(numbers):
        out[array[..., i] >= 0.5] = number
    axes = np.asarray(volume.direction, dtype=float)  # columns: slice, row, column axes
    geometry = Geometry(
        shape=tuple(int(v) for v in out.shape),
        spacing=tuple(float(v) for v in volume.spacing),
        origin=tuple(float(v) for v in volume.position),
        direction=tuple(float(v) for v in np.column_stack([axes[:, 2], axes[:, 1], axes[:, 0]]).reshape(-1)),
    )
    return out, geometry


def read_dicom_seg(
    path: str | os.PathLike[str], series: DicomSeries | None = None
) -> tuple[np.ndarray, Geometry, dict[int, str]]:
    """Read a DICOM-SEG as a label map (z, y, x), its geometry and segment number -> label.

    With ``series`` (the source), the map lies on the series' grid (as :func:`read_series`
    gives it); overlapping segments: the higher segment number wins. Without it, the grid is
    the one highdicom reconstructs from the frames (it may cover only the non-empty slices).

    Raises:
        ValueError: the file is not a SEG, belongs to another frame of reference, or its frames
            do not lie on the series' slices.

    Example:
        >>> mask, geometry, labels = read_dicom_seg("liver.dcm", ct_series)  # doctest: +SKIP
        >>> labels  # doctest: +SKIP
        {1: 'Liver'}
    """
    import highdicom as hd

    path = Path(path)
    try:
        with quiet():
            seg = hd.seg.segread(path)
    except Exception as err:
        raise ValueError(f"{path}: not a readable DICOM-SEG file ({type(err).__name__}: {err})") from err
    segments = seg.SegmentSequence  # a LABELMAP SEG also describes segment 0, the background
    labels = {int(d.SegmentNumber): str(d.get("SegmentLabel", "")) for d in segments if d.SegmentNumber}
    if series is None:
        with quiet():
            mask, geometry = _own_grid(seg, sorted(labels))
        return mask, geometry, labels
    _, headers, geometry = series_geometry(series)
    ours, theirs = headers[0].get("FrameOfReferenceUID"), seg.get("FrameOfReferenceUID")
    if ours and theirs and ours != theirs:
        raise ValueError(f"{path}: the SEG belongs to another frame of reference than {series.label}")
    return _frames_onto(seg, geometry, path), geometry, labels
