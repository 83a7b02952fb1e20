"""predict on DICOM series: one case per series, masks in the series geometry named by UID, a
DICOM-SEG that reads back, a broken series reported while the others run, no patient data out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from autoseg.evaluation.metrics import dice_per_label
from autoseg.inference.dicom_inputs import dicom_seg_writer
from autoseg.inference.inputs import discover_inputs
from autoseg.inference.model import open_model
from autoseg.inference.predictor import ConfigurationPredictor, PredictOptions
from autoseg.inference.run import predict_cases
from autoseg.io.dicom import find_series, read_series
from autoseg.io.dicom_seg import read_dicom_seg
from autoseg.io.images import read_image
from tests.inference.conftest import ThresholdNet

PATIENT = "Secret^Patient"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
OBLIQUE = (0.866025, 0.5, 0.0, -0.5, 0.866025, 0.0)


def write_volume(
    folder: Path, volume: np.ndarray, spacing: tuple[float, float, float], skip: int | None = None
) -> str:
    """Write ``volume`` (z, y, x) int16 as an oblique MR series (slice ``skip`` left out); its UID."""
    folder.mkdir(parents=True)
    uid, iop = generate_uid(), np.asarray(OBLIQUE)
    normal = np.cross(iop[:3], iop[3:])
    for k, plane in enumerate(volume):
        if k == skip:
            continue
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = MR_IMAGE
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PatientName, ds.PatientID = PATIENT, "PID-4711"
        ds.StudyInstanceUID, ds.FrameOfReferenceUID = (
            "1.2.826.0.1.3680043.8.498.1",
            "1.2.826.0.1.3680043.8.498.2",
        )
        ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber, ds.SeriesDescription = uid, "MR", 4, "T1"
        ds.InstanceNumber = len(volume) - k  # reversed on purpose: order comes from positions
        ds.ImagePositionPatient = [
            round(float(v), 6) for v in np.array([5.0, -30.0, 12.0]) + k * spacing[0] * normal
        ]
        ds.ImageOrientationPatient = list(OBLIQUE)
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
        ds.PixelData = plane.astype(np.int16).tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return uid


def test_dicom_series_in_masks_and_seg_out(trained, tmp_path):
    shape, spacing = (12, 40, 36), (2.5, 0.9, 0.9)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    label = (((zz - 14) / 10) ** 2 + ((yy - 18) / 9) ** 2 + ((xx - 16) / 9) ** 2 <= 1).astype(np.uint8)
    volume = np.where(label > 0, 300, 40).astype(np.int16)
    study = tmp_path / "study"
    good = write_volume(study / "a" / "series", volume, spacing)
    broken = write_volume(study / "b", volume, spacing, skip=5)  # a missing slice
    with open_model(trained["results"]) as model:
        predictor = ConfigurationPredictor(
            model.configuration("3d_fullres"), ["0"], torch.device("cpu"), PredictOptions(tta=False)
        )
    image = volume.astype(np.float32)
    predictor.networks = [ThresholdNet((170.0 - image.mean()) / image.std())]
    notes: list[str] = []
    cases = discover_inputs(study, ["MRI"], notes)
    assert sorted(c.name for c in cases) == sorted([good, broken])
    out = tmp_path / "out"
    record = predict_cases(cases, [predictor], out, writers=[dicom_seg_writer({1: "class_1"})])
    errors = {c["case"]: c["error"] for c in record["cases"] if "error" in c}
    assert list(errors) == [broken] and "missing" in errors[broken]
    mask, geometry = read_image(out / f"{good}.nii.gz")
    series = next(s for s in find_series(study)[0] if s.uid == good)
    _, series_geometry = read_series(series)
    assert geometry.shape == series_geometry.shape
    assert np.allclose(geometry.spacing, series_geometry.spacing, atol=1e-4)
    assert np.allclose(geometry.origin, series_geometry.origin, atol=1e-4)
    assert np.allclose(geometry.direction, series_geometry.direction, atol=1e-4)
    assert dice_per_label(mask, label, [1])[1] > 0.95
    seg, _, names = read_dicom_seg(out / f"{good}.seg.dcm", series)
    assert np.array_equal(seg, mask) and names == {1: "class_1"}
    referenced = pydicom.dcmread(out / f"{good}.seg.dcm").ReferencedSeriesSequence[0].SeriesInstanceUID
    assert referenced == good
    everything = " ".join(p.name for p in out.iterdir()) + json.dumps(record) + " ".join(notes)
    assert "Secret" not in everything and "4711" not in everything
