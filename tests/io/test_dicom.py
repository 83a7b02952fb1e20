"""DICOM series reading: synthetic series crafted with pydicom, and the real series in ../shared/data."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from autoseg.io.dicom import (
    DicomSeries,
    DicomSeriesError,
    find_series,
    read_all,
    read_series,
    series_output_name,
)
from tests.conftest import shared_data

PATIENT_NAME = "Secret^Patient"
PATIENT_ID = "PID-SECRET-4711"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
OBLIQUE = (0.866025, 0.5, 0.0, -0.5, 0.866025, 0.0)


def _dataset(sop_class: str, series_uid: str, modality: str, number: int, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID, ds.Modality = series_uid, modality
    ds.SeriesNumber, ds.SeriesDescription = number, description
    return ds


def write_series(
    folder: Path,
    *,
    n: int = 5,
    rows: int = 8,
    cols: int = 8,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    step: float = 2.5,
    positions: Sequence[float] | None = None,
    origin: tuple[float, float, float] = (10.0, -20.0, 30.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    modality: str = "MR",
    slopes: Sequence[float] | None = None,
    intercept: float = 0.0,
    sizes: Sequence[tuple[int, int]] | None = None,
    orientations: Sequence[Sequence[float]] | None = None,
    number: int = 3,
    description: str = "synthetic",
    preamble: bool = True,
    prefix: str = "",
) -> tuple[str, np.ndarray]:
    """Write one series of single-frame files, shuffled names and scrambled InstanceNumbers.

    Slice ``k`` lies at ``origin + positions[k] * normal`` (default ``k * step``) and stores
    ``(k + 1) * 100 + (r * cols + c) % 7``.

    Returns:
        The SeriesInstanceUID and the expected volume (z, y, x), rescale applied, in position order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    offsets = list(positions) if positions is not None else [k * step for k in range(n)]
    instance_numbers = random.Random(len(offsets)).sample(range(1, len(offsets) + 1), len(offsets))
    names = random.Random(7).sample(range(1000), len(offsets))
    expected = []
    for k, offset in enumerate(offsets):
        iop = np.asarray(orientations[k] if orientations else orientation, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        r, c = sizes[k] if sizes else (rows, cols)
        stored = ((k + 1) * 100 + np.arange(r * c).reshape(r, c) % 7).astype(np.int16)
        slope = slopes[k] if slopes else 1.0
        ds = _dataset(CT_IMAGE if modality == "CT" else MR_IMAGE, uid, modality, number, description)
        ds.InstanceNumber = instance_numbers[k]
        ds.ImagePositionPatient = [round(float(v), 6) for v in np.asarray(origin) + offset * normal]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = 99.0  # deliberately wrong: spacing must come from the positions
        ds.Rows, ds.Columns = r, c
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = stored.tobytes()
        path = folder / f"{prefix}{names[k]:04d}.dcm"
        if preamble:
            ds.save_as(path, enforce_file_format=True)
        else:
            del ds.file_meta
            ds.save_as(path, implicit_vr=True, little_endian=True)
        expected.append((float(offset), stored.astype(np.float32) * slope + intercept))
    volume = np.stack([v for _, v in sorted(expected, key=lambda e: e[0])]) if not sizes else np.zeros(0)
    return uid, volume


def only_series(folder: Path) -> DicomSeries:
    series, _ = find_series(folder)
    assert len(series) == 1
    return series[0]


def assert_anonymous(*texts: str) -> None:
    for text in texts:
        assert PATIENT_NAME not in text and "Secret" not in text and PATIENT_ID not in text


def test_slices_sorted_by_position_not_instance_number(tmp_path: Path) -> None:
    _, expected = write_series(tmp_path, positions=[0.0, 7.5, 2.5, 10.0, 5.0])
    volume, geometry = read_series(only_series(tmp_path))
    assert volume.dtype == np.float32
    np.testing.assert_array_equal(volume, expected)
    assert geometry.shape == (5, 8, 8)
    np.testing.assert_allclose(geometry.spacing, (2.5, 0.8, 0.7))
    np.testing.assert_allclose(geometry.origin, (10.0, -20.0, 30.0))


def test_geometry_matches_simpleitk_series_reader(tmp_path: Path) -> None:
    write_series(tmp_path, orientation=OBLIQUE, step=3.0, n=6, rows=6, cols=9)
    volume, geometry = read_series(only_series(tmp_path))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    np.testing.assert_allclose(geometry.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(geometry.spacing[::-1], image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(geometry.direction, image.GetDirection(), atol=1e-4)
    np.testing.assert_array_equal(volume, sitk.GetArrayFromImage(image))


def test_ct_rescale_gives_hounsfield_units(tmp_path: Path) -> None:
    _, expected = write_series(tmp_path, modality="CT", intercept=-1024.0)
    volume, _ = read_series(only_series(tmp_path))
    np.testing.assert_array_equal(volume, expected)
    assert volume.min() == 100 - 1024


def test_rescale_slope_of_each_slice_is_applied(tmp_path: Path) -> None:
    _, expected = write_series(tmp_path, slopes=[1.0, 0.5, 2.0, 0.25, 1.5], intercept=3.0)
    volume, _ = read_series(only_series(tmp_path))
    np.testing.assert_allclose(volume, expected)


def test_missing_slice_is_an_error_naming_the_series(tmp_path: Path) -> None:
    write_series(tmp_path / "study" / "mr", positions=[0.0, 2.5, 5.0, 10.0, 12.5], description="T1 axial")
    with pytest.raises(DicomSeriesError, match="missing slices") as info:
        read_series(only_series(tmp_path))
    message = str(info.value)
    assert "series 3 'T1 axial' in study/mr" in message and "about 1 slice(s) missing" in message
    assert_anonymous(message)


def test_varying_spacing_is_an_error(tmp_path: Path) -> None:
    write_series(tmp_path, positions=[0.0, 1.0, 2.0, 3.0, 4.3, 5.6, 6.9])
    with pytest.raises(DicomSeriesError, match="varying spacing between slices"):
        read_series(only_series(tmp_path))


def test_small_position_jitter_is_tolerated(tmp_path: Path) -> None:
    write_series(tmp_path, positions=[0.0, 1.02, 1.99, 3.01, 4.0])
    _, geometry = read_series(only_series(tmp_path))
    assert geometry.spacing[0] == pytest.approx(1.0)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    sizes = [(8, 8), (8, 8), (8, 6), (8, 8)]
    iops = [(1.0, 0, 0, 0, 1.0, 0)] * 3 + [OBLIQUE]
    write_series(tmp_path, n=4, sizes=sizes, orientations=iops)
    with pytest.raises(DicomSeriesError) as info:
        read_series(only_series(tmp_path))
    assert len(info.value.problems) == 2
    assert "mixed image sizes (rows, columns): 3 x (8, 8), 1 x (8, 6)" in str(info.value)
    assert "mixed orientations" in str(info.value)


def test_duplicate_positions_are_an_error(tmp_path: Path) -> None:
    write_series(tmp_path, positions=[0.0, 2.5, 2.5, 5.0])
    with pytest.raises(DicomSeriesError, match="1 duplicate slice position"):
        read_series(only_series(tmp_path))


def test_single_slice_is_not_supported(tmp_path: Path) -> None:
    write_series(tmp_path, n=1)
    with pytest.raises(DicomSeriesError, match="single slice"):
        read_series(only_series(tmp_path))


def test_multi_frame_and_missing_geometry_are_errors(tmp_path: Path) -> None:
    write_series(tmp_path / "multi", n=2)
    write_series(tmp_path / "flat", n=2)
    for path in (tmp_path / "multi").iterdir():
        ds = pydicom.dcmread(path)
        ds.NumberOfFrames = 2
        ds.save_as(path)
    for path in (tmp_path / "flat").iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImageOrientationPatient
        ds.save_as(path)
    _, _, errors = read_all(tmp_path)
    assert [(s.folder, m.split(": ", 2)[2]) for s, m in errors] == [
        ("flat", "instances lack ImageOrientationPatient: not a volume with a known geometry"),
        ("multi", "2 multi-frame (enhanced) instance(s): not supported; export single-frame images"),
    ]


def test_sheared_slices_are_an_error(tmp_path: Path) -> None:
    write_series(tmp_path, n=4, orientation=(1.0, 0, 0, 0, 0.9659258, -0.2588190), step=2.0)
    for path in tmp_path.iterdir():  # re-stack the slices straight along z: a tilted gantry
        ds = pydicom.dcmread(path)
        x, _, z = ds.ImagePositionPatient
        ds.ImagePositionPatient = [x, -20.0, z]
        ds.save_as(path)
    with pytest.raises(DicomSeriesError, match="gantry tilt"):
        read_series(only_series(tmp_path))


def test_several_series_per_folder_and_nested_folders(tmp_path: Path) -> None:
    a, _ = write_series(tmp_path / "study", number=1, prefix="a")
    b, _ = write_series(tmp_path / "study", number=2, prefix="b", modality="CT", intercept=-1024.0)
    c, _ = write_series(tmp_path / "study" / "deeper" / "still", number=5)
    series, notes = find_series(tmp_path)
    assert notes == []
    assert [(s.uid, s.folder, s.num_instances) for s in series] == [
        (a, "study", 5),
        (b, "study", 5),
        (c, "study/deeper/still", 5),
    ]
    assert [s.modality for s in series] == ["MR", "CT", "MR"]
    assert all(len({p.parent for p in s.files}) == 1 for s in series)


def _non_image(path: Path, sop_class: str, rows: bool) -> None:
    ds = _dataset(sop_class, generate_uid(), "SEG" if rows else "SR", 9, "not an image")
    if rows:
        ds.Rows, ds.Columns = 8, 8
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_non_images_skipped_with_a_note_and_non_dicom_ignored(tmp_path: Path) -> None:
    write_series(tmp_path / "mr")
    _non_image(tmp_path / "derived" / "seg.dcm", "1.2.840.10008.5.1.4.1.1.66.4", rows=True)
    _non_image(tmp_path / "derived" / "sr.dcm", "1.2.840.10008.5.1.4.1.1.88.11", rows=False)
    (tmp_path / "derived" / "readme.txt").write_text("not dicom\n")
    (tmp_path / "DICOMDIR.bak").write_bytes(b"\x00" * 300)
    series, notes = find_series(tmp_path)
    assert [s.folder for s in series] == ["mr"]
    assert notes == [
        ".: ignored 1 file that is not DICOM",
        "derived: ignored 1 file that is not DICOM",
        "derived: skipped 1 Basic Text SR Storage object (not an image series)",
        "derived: skipped 1 Segmentation Storage object (not an image series)",
    ]
    assert_anonymous(*notes)


def test_files_without_preamble_are_read(tmp_path: Path) -> None:
    _, expected = write_series(tmp_path, preamble=False)
    assert (tmp_path / next(iter(sorted(p.name for p in tmp_path.iterdir())))).read_bytes()[
        128:132
    ] != b"DICM"
    volume, _ = read_series(only_series(tmp_path))
    np.testing.assert_array_equal(volume, expected)


def test_read_all_reads_good_series_and_reports_bad_ones(tmp_path: Path) -> None:
    good, expected = write_series(tmp_path / "good")
    bad, _ = write_series(tmp_path / "bad", positions=[0.0, 1.0, 2.0, 5.0])
    volumes, notes, errors = read_all(tmp_path)
    assert [(s.uid, v.shape) for s, v, _ in volumes] == [(good, (5, 8, 8))]
    np.testing.assert_array_equal(volumes[0][1], expected)
    assert [(s.uid, s.folder) for s, _ in errors] == [(bad, "bad")]
    assert "missing slices" in errors[0][1]
    assert_anonymous(errors[0][1], *notes)


def test_series_output_name_is_the_uid() -> None:
    series = DicomSeries("1.2.840.113619.2.55.3", PATIENT_NAME, "MR", 1, (), ".")
    assert series_output_name(series) == "1.2.840.113619.2.55.3"
    odd = DicomSeries(" 1.2/3 x ", "", "MR", None, (), ".")
    assert series_output_name(odd) == "1.2_3_x"


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_series(tmp_path / "nowhere")


# --- real data -------------------------------------------------------------------------------


def real_dicom() -> Path:
    data = shared_data()
    if data is None or not (data / "dicom").is_dir():
        pytest.skip("real data ../shared/data/dicom is absent")
    return data / "dicom"


def assert_like_simpleitk(folder: Path, volume: np.ndarray, geometry: object) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    np.testing.assert_allclose(geometry.origin, image.GetOrigin(), atol=1e-4)  # type: ignore[attr-defined]
    np.testing.assert_allclose(geometry.spacing[::-1], image.GetSpacing(), atol=1e-4)  # type: ignore[attr-defined]
    np.testing.assert_allclose(geometry.direction, image.GetDirection(), atol=1e-4)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(volume, sitk.GetArrayFromImage(image))


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("study", "shape"),
    [("hippocampus_crop_study1", (32, 51, 35)), ("hippocampus_crop_study2", (35, 48, 36)),
     ("hippocampus_crop_study3", (40, 50, 34))],
)  # fmt: skip
def test_real_hippocampus_series(study: str, shape: tuple[int, int, int]) -> None:
    folder = real_dicom() / study
    volume, geometry = read_series(only_series(folder))
    assert volume.shape == geometry.shape == shape
    np.testing.assert_allclose(geometry.spacing, (1.0, 1.0, 1.0), atol=1e-4)
    assert_like_simpleitk(folder, volume, geometry)


@pytest.mark.realdata
def test_real_anisotropic_oblique_t1() -> None:
    folder = real_dicom() / "mr_t1post_study3"
    series = only_series(folder)
    assert (series.modality, series.number, series.description) == ("MR", 11, "T1post")
    volume, geometry = read_series(series)
    assert geometry.shape == (22, 320, 280)
    np.testing.assert_allclose(geometry.spacing, (6.5, 0.6875, 0.6875), atol=1e-4)
    assert abs(geometry.direction[5]) > 0.1  # oblique: the normal leans out of the z axis
    assert_like_simpleitk(folder, volume, geometry)


@pytest.mark.realdata
def test_real_ct_in_hounsfield_units() -> None:
    folder = real_dicom() / "ct_3slice_with_seg"
    series, notes = find_series(folder)
    assert [s.folder for s in series] == ["ct"]
    assert notes == [
        ".: ignored 1 file that is not DICOM",
        ".: skipped 1 Segmentation Storage object (not an image series)",
    ]
    volume, geometry = read_series(series[0])
    assert geometry.shape == (3, 512, 512)
    np.testing.assert_allclose(geometry.spacing, (1.0, 0.810547, 0.810547), atol=1e-4)
    body = volume[volume > -2000]  # outside the scanner's field of view is -3024
    assert ((body > -1100) & (body < -900)).mean() > 0.1  # air around the patient
    assert -100 < np.median(body[body > -500]) < 100  # soft tissue
    assert volume.max() < 3100
    assert_like_simpleitk(folder / "ct", volume, geometry)
