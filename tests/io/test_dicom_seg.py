"""DICOM-SEG writing and reading: the shipped liver SEG, and round trips on real and synthetic series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from autoseg.io.dicom import DicomSeries, find_series, read_series, series_geometry
from autoseg.io.dicom_seg import read_dicom_seg, write_dicom_seg
from autoseg.io.images import read_image
from tests.io.test_dicom import OBLIQUE, PATIENT_ID, PATIENT_NAME, only_series, real_dicom, write_series

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def ct_case() -> Path:
    return real_dicom() / "ct_3slice_with_seg"


def synthetic_mask(shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:4, 2:6, 1:5] = 1
    mask[2, 3:5, 2:4] = 2
    return mask


def source_headers(series: DicomSeries) -> list[pydicom.Dataset]:
    """The series' sorted headers with the type 2 attributes highdicom copies (our files lack them)."""
    _, headers, _ = series_geometry(series)
    for header in headers:
        for tag in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime"):
            setattr(header, tag, None)
    return headers


def assert_references(path: Path, series_uid: str, sop_uids: set[str]) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    assert (ds.SOPClassUID, ds.Modality, ds.SegmentationType) == (SEG_STORAGE, "SEG", "BINARY")
    (ref,) = ds.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == series_uid
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == sop_uids
    return ds


@pytest.mark.realdata
def test_shipped_liver_seg_equals_the_nrrd_mask() -> None:
    folder = ct_case()
    series = only_series(folder / "ct")
    mask, geometry, labels = read_dicom_seg(folder / "liver.dcm", series)
    expected, expected_geometry = read_image(folder / "liver_seg.nrrd")
    assert labels == {1: "Liver"}
    assert mask.shape == (3, 512, 512) and int(mask.sum()) > 100_000
    np.testing.assert_array_equal(mask, expected)
    assert geometry.shape == expected_geometry.shape
    for ours, theirs in zip(geometry.to_json().values(), expected_geometry.to_json().values(), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.mark.realdata
def test_shipped_liver_seg_without_series_has_its_own_grid() -> None:
    folder = ct_case()
    mask, geometry, labels = read_dicom_seg(folder / "liver.dcm")
    expected, expected_geometry = read_image(folder / "liver_seg.nrrd")
    assert labels == {1: "Liver"}
    # highdicom stacks the frames from the top slice down: same voxels, z axis reversed
    np.testing.assert_array_equal(mask[::-1], expected)
    np.testing.assert_allclose(geometry.direction[8], -1.0)
    np.testing.assert_allclose(geometry.origin[2], expected_geometry.origin[2] + 2.0, atol=1e-4)


@pytest.mark.realdata
def test_liver_round_trip_on_the_ct_series(tmp_path: Path) -> None:
    folder = ct_case()
    series = only_series(folder / "ct")
    mask, geometry, _ = read_dicom_seg(folder / "liver.dcm", series)
    out = write_dicom_seg(mask, series, {0: "background", 1: "liver"}, tmp_path / "seg" / "liver.dcm")
    assert [p.name for p in out.parent.iterdir()] == ["liver.dcm"]  # no temporary file left
    back, back_geometry, labels = read_dicom_seg(out, series)
    np.testing.assert_array_equal(back, mask)
    assert back_geometry == geometry and labels == {1: "liver"}
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    ds = assert_references(out, series.uid, {s.SOPInstanceUID for s in sources})
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert ds.SeriesInstanceUID != series.uid


def test_round_trip_on_an_oblique_shuffled_series(tmp_path: Path) -> None:
    write_series(tmp_path / "mr", orientation=OBLIQUE, positions=[3.0, 0.0, 6.0, 1.5, 4.5], rows=6, cols=7)
    series = only_series(tmp_path / "mr")
    _, geometry = read_series(series)
    mask = synthetic_mask(geometry.shape)
    labels = {1: "anterior", 2: "posterior", 3: "absent"}
    out = write_dicom_seg(mask, series, labels, tmp_path / "seg.dcm", version="9.9")
    back, back_geometry, back_labels = read_dicom_seg(out, series)
    np.testing.assert_array_equal(back, mask)
    assert back_geometry == geometry and back_labels == labels
    _, headers, _ = series_geometry(series)
    ds = assert_references(out, series.uid, {h.SOPInstanceUID for h in headers})
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["anterior", "posterior", "absent"]
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert ds.SegmentSequence[0].SegmentAlgorithmName == "autoseg"
    assert ds.SoftwareVersions == "9.9"
    assert int(ds.NumberOfFrames) == 4  # empty frames are left out: 3 slices of 1, 1 of 2
    assert ds.PatientName == PATIENT_NAME and ds.PatientID == PATIENT_ID  # copied for the PACS


def test_own_grid_without_series(tmp_path: Path) -> None:
    write_series(tmp_path / "mr", n=5)
    series = only_series(tmp_path / "mr")
    _, geometry = read_series(series)
    mask = synthetic_mask(geometry.shape)
    out = write_dicom_seg(mask, series, {1: "a", 2: "b"}, tmp_path / "seg.dcm")
    own, own_geometry, _ = read_dicom_seg(out)
    # highdicom keeps only the slices with frames (1..3) and may stack them top-down
    if own_geometry.direction[8] < 0:
        own = own[::-1]
    np.testing.assert_array_equal(own, mask[1:4])
    assert own_geometry.spacing == pytest.approx(geometry.spacing)


def test_empty_mask_round_trips(tmp_path: Path) -> None:
    write_series(tmp_path / "mr", n=3)
    series = only_series(tmp_path / "mr")
    out = write_dicom_seg(np.zeros((3, 8, 8), np.int64), series, {1: "tumour"}, tmp_path / "seg.dcm")
    back, _, labels = read_dicom_seg(out, series)
    assert back.shape == (3, 8, 8) and not back.any() and labels == {1: "tumour"}


def test_overlapping_segments_higher_number_wins(tmp_path: Path) -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    write_series(tmp_path / "mr", n=3)
    series = only_series(tmp_path / "mr")
    headers = source_headers(series)
    planes = np.zeros((3, 8, 8, 2), dtype=np.uint8)
    planes[:, 1:6, 1:6, 0] = 1  # segment 1: a box
    planes[1, 3:8, 3:8, 1] = 1  # segment 2: overlaps its corner on slice 1
    descriptions = [
        hd.seg.SegmentDescription(n, f"s{n}", codes.SCT.Tissue, codes.SCT.Tissue, "MANUAL") for n in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        headers, planes, "BINARY", descriptions, hd.UID(), 5, hd.UID(), 1, "m", "m", "1", "0"
    )
    seg.save_as(tmp_path / "seg.dcm")
    back, _, labels = read_dicom_seg(tmp_path / "seg.dcm", series)
    expected = planes[..., 0].copy()
    expected[planes[..., 1] == 1] = 2
    np.testing.assert_array_equal(back, expected)
    assert labels == {1: "s1", 2: "s2"}


def test_labelmap_seg_is_read(tmp_path: Path) -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    write_series(tmp_path / "mr", n=3)
    series = only_series(tmp_path / "mr")
    headers = source_headers(series)
    mask = synthetic_mask((3, 8, 8))
    descriptions = [
        hd.seg.SegmentDescription(n, f"s{n}", codes.SCT.Tissue, codes.SCT.Tissue, "MANUAL") for n in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        headers, mask, "LABELMAP", descriptions, hd.UID(), 5, hd.UID(), 1, "m", "m", "1", "0"
    )
    seg.save_as(tmp_path / "labelmap.dcm")
    back, _, labels = read_dicom_seg(tmp_path / "labelmap.dcm", series)
    np.testing.assert_array_equal(back, mask)
    assert labels == {1: "s1", 2: "s2"}
    own, _, _ = read_dicom_seg(tmp_path / "labelmap.dcm")
    assert sorted(np.unique(own).tolist()) == [0, 1, 2]


def test_write_rejects_bad_masks_and_labels(tmp_path: Path) -> None:
    write_series(tmp_path / "mr", n=3)
    series = only_series(tmp_path / "mr")
    with pytest.raises(ValueError, match=r"mask shape \(2, 8, 8\) differs"):
        write_dicom_seg(np.zeros((2, 8, 8), np.uint8), series, {1: "a"}, tmp_path / "x.dcm")
    with pytest.raises(ValueError, match=r"must be 1\.\.N"):
        write_dicom_seg(np.zeros((3, 8, 8), np.uint8), series, {1: "a", 3: "c"}, tmp_path / "x.dcm")
    with pytest.raises(ValueError, match=r"values \[2\] that are not in labels"):
        write_dicom_seg(synthetic_mask((3, 8, 8)), series, {1: "a"}, tmp_path / "x.dcm")
    with pytest.raises(ValueError, match="integer label map"):
        write_dicom_seg(np.zeros((3, 8, 8), np.float32), series, {1: "a"}, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_read_on_another_series_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", n=3)
    write_series(tmp_path / "b", n=3, origin=(10.0, -20.0, 100.0))
    first, other = only_series(tmp_path / "a"), only_series(tmp_path / "b")
    path = write_dicom_seg(synthetic_mask((3, 8, 8)), first, {1: "a", 2: "b"}, tmp_path / "seg.dcm")
    with pytest.raises(ValueError, match="does not lie on a slice of the given series"):
        read_dicom_seg(path, other)


def test_reading_a_non_seg_is_a_clear_error(tmp_path: Path) -> None:
    write_series(tmp_path / "mr", n=2)
    series = only_series(tmp_path / "mr")
    with pytest.raises(ValueError, match="not a readable DICOM-SEG"):
        read_dicom_seg(series.files[0])


def test_series_found_beside_a_seg_it_references(tmp_path: Path) -> None:
    write_series(tmp_path, n=3)
    series = only_series(tmp_path)
    write_dicom_seg(synthetic_mask((3, 8, 8)), series, {1: "a", 2: "b"}, tmp_path / "seg.dcm")
    found, notes = find_series(tmp_path)
    assert [s.uid for s in found] == [series.uid]
    assert notes == [".: skipped 1 Segmentation Storage object (not an image series)"]
