"""``autoseg convert dicom`` and ``autoseg convert msd``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main
from autoseg.commands.convert import register
from autoseg.io.convert import convert_dicom, convert_msd, msd_dataset_name
from autoseg.io.images import read_image
from tests.io.test_dicom import assert_anonymous, real_dicom, write_series

SPACING_4D = (0.7, 0.8, 2.5, 1.0)
ORIGIN_4D = (5.0, -3.0, 12.0, 0.0)
# a 3D rotation (axes x and y swapped, so a left-handed frame) inside a 4D direction
DIRECTION_4D = (0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def convert_cli(argv: Sequence[str]) -> int:
    """Run ``autoseg convert ...`` through this module's own parser (as autoseg's would)."""
    parser = argparse.ArgumentParser(prog="autoseg")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", *argv])
    return int(args.func(args))


# --- DICOM -----------------------------------------------------------------------------------


def test_convert_dicom_writes_every_good_series_and_reports_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mr, mr_volume = write_series(tmp_path / "in" / "mr", slopes=[0.5] * 5, description="T2")
    ct, ct_volume = write_series(tmp_path / "in" / "ct", modality="CT", intercept=-1024.0, number=4)
    bad, _ = write_series(tmp_path / "in" / "bad", positions=[0.0, 1.0, 3.0, 4.0], number=7)
    (tmp_path / "in" / "notes.txt").write_text("hello")
    code = convert_cli(["dicom", str(tmp_path / "in"), str(tmp_path / "out")])
    assert code == 1
    out = capsys.readouterr()
    assert f"{ct}.nii.gz: CT" in out.out and "1 series failed" in out.out
    assert "error: series 7 'synthetic' in bad" in out.err and "missing slices" in out.err
    assert "note: .: ignored 1 file that is not DICOM" in out.out
    listing = json.loads((tmp_path / "out" / "series.json").read_text())
    assert [e["series_uid"] for e in listing["series"]] == [ct, mr]
    assert listing["series"][1] == {
        "file": f"{mr}.nii.gz",
        "series_uid": mr,
        "series_number": 3,
        "description": "T2",
        "modality": "MR",
        "folder": "mr",
        "num_instances": 5,
        "shape": [5, 8, 8],
        "spacing": [2.5, 0.8, 0.7],
    }
    assert [e["series_uid"] for e in listing["errors"]] == [bad]
    assert_anonymous(out.out, out.err, json.dumps(listing))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["series.json", f"{mr}.nii.gz", f"{ct}.nii.gz"]
    )
    mr_array, mr_geometry = read_image(tmp_path / "out" / f"{mr}.nii.gz")
    assert mr_array.dtype == np.float32 and mr_geometry.spacing == pytest.approx((2.5, 0.8, 0.7))
    np.testing.assert_array_equal(mr_array, mr_volume)
    ct_array, _ = read_image(tmp_path / "out" / f"{ct}.nii.gz")
    assert ct_array.dtype == np.int16  # integer HU stored compactly
    np.testing.assert_array_equal(ct_array, ct_volume)


def test_convert_dicom_all_good_exits_zero(tmp_path: Path) -> None:
    write_series(tmp_path / "in")
    assert convert_cli(["dicom", str(tmp_path / "in"), str(tmp_path / "out")]) == 0
    result = convert_dicom(tmp_path / "in", tmp_path / "again")
    assert len(result.written) == 1 and not result.errors and not result.notes


def test_convert_dicom_without_any_series_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scan.nii.gz").write_bytes(b"not dicom")
    assert convert_cli(["dicom", str(tmp_path / "in"), str(tmp_path / "out")]) == 1
    assert "no DICOM image series found" in capsys.readouterr().err


@pytest.mark.realdata
def test_convert_real_dicom_folder(tmp_path: Path) -> None:
    result = convert_dicom(real_dicom(), tmp_path)
    assert not result.errors
    assert sorted(e["shape"][0] for e in result.written) == [3, 22, 32, 35, 40]
    assert any("Segmentation Storage" in n for n in result.notes)
    t1 = next(e for e in result.written if e["description"] == "T1post")
    _, geometry = read_image(tmp_path / t1["file"])
    assert geometry.shape == (22, 320, 280)
    np.testing.assert_allclose(geometry.spacing, (6.5, 0.6875, 0.6875), atol=1e-4)


# --- MSD -------------------------------------------------------------------------------------


def write_4d(path: Path, channels: np.ndarray) -> None:
    """Write (C, Z, Y, X) as a 4D NIfTI: SimpleITK's size is then (X, Y, Z, C)."""
    image = sitk.GetImageFromArray(channels, isVector=False)
    assert image.GetSize() == channels.shape[::-1]
    image.SetSpacing(SPACING_4D)
    image.SetOrigin(ORIGIN_4D)
    image.SetDirection(DIRECTION_4D)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def write_label(path: Path, label: np.ndarray) -> None:
    image = sitk.GetImageFromArray(label)
    image.SetSpacing(SPACING_4D[:3])
    image.SetOrigin(ORIGIN_4D[:3])
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def make_msd_task(root: Path, num_train: int = 3, num_test: int = 1, channels: int = 2) -> Path:
    """A tiny MSD Task01_BrainTumour-like task: 4D (FLAIR, T1w) images, 3 labels, macOS ``._`` files."""
    task = root / "Task01_BrainTumour"
    rng = np.random.default_rng(0)
    for i in range(num_train + num_test):
        split = "Tr" if i < num_train else "Ts"
        name = f"BRATS_{i:03d}.nii.gz"
        write_4d(task / f"images{split}" / name, rng.normal(size=(channels, 6, 7, 8)).astype(np.float32))
        (task / f"images{split}" / f"._{name}").write_bytes(b"\x00\x05\x16\x07 apple double")
        if split == "Tr":
            label = np.zeros((6, 7, 8), np.uint8)
            label[1:4, 2:5, 3:6] = 1 + i % 2
            label[2, 3, 4] = 2
            write_label(task / "labelsTr" / name, label)
            (task / "labelsTr" / f"._{name}").write_bytes(b"\x00\x05\x16\x07")
    description = {
        "name": "BRATS",
        "description": "synthetic stand-in",
        "licence": "CC-BY-SA 4.0",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor"},
        "numTraining": num_train,
        "numTest": num_test,
        "training": [{"image": f"./imagesTr/BRATS_{i:03d}.nii.gz"} for i in range(num_train)],
        "test": [f"./imagesTs/BRATS_{i:03d}.nii.gz" for i in range(num_train, num_train + num_test)],
    }
    (task / "dataset.json").write_text(json.dumps(description))
    return task


def test_msd_task_is_converted_to_the_raw_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = make_msd_task(tmp_path / "msd")
    assert convert_cli(["msd", str(task), str(tmp_path / "raw"), "--num-workers", "2"]) == 0
    out = tmp_path / "raw" / "Dataset001_BrainTumour"
    assert f"wrote {out}" in capsys.readouterr().out
    desc = json.loads((out / "dataset.json").read_text())
    assert desc["channel_names"] == {"0": "FLAIR", "1": "T1w"}
    assert desc["labels"] == {"background": 0, "edema": 1, "non-enhancing tumor": 2}
    assert (desc["numTraining"], desc["file_ending"], desc["licence"]) == (3, ".nii.gz", "CC-BY-SA 4.0")
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        f"BRATS_{i:03d}_{c:04d}.nii.gz" for i in range(3) for c in range(2)
    ]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [f"BRATS_{i:03d}.nii.gz" for i in range(3)]
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [
        "BRATS_003_0000.nii.gz",
        "BRATS_003_0001.nii.gz",
    ]
    assert not list(tmp_path.joinpath("raw").glob(".*"))  # no partial folder left

    source = sitk.ReadImage(str(task / "imagesTr" / "BRATS_001.nii.gz"))
    channel, geometry = read_image(out / "imagesTr" / "BRATS_001_0001.nii.gz")
    np.testing.assert_array_equal(channel, sitk.GetArrayFromImage(source)[1])
    assert geometry.shape == (6, 7, 8)
    np.testing.assert_allclose(geometry.spacing, source.GetSpacing()[2::-1])
    np.testing.assert_allclose(geometry.origin, source.GetOrigin()[:3])
    direction_4d = np.asarray(source.GetDirection()).reshape(4, 4)
    np.testing.assert_allclose(geometry.direction, direction_4d[:3, :3].reshape(-1))
    label, label_geometry = read_image(out / "labelsTr" / "BRATS_001.nii.gz")
    assert label_geometry == geometry and set(np.unique(label).tolist()) == {0, 2}

    assert main(["validate", str(out)]) == 0


def test_msd_single_channel_images_are_copied(tmp_path: Path) -> None:
    task = tmp_path / "Task04_Hippocampus"
    image = sitk.GetImageFromArray(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    label = sitk.GetImageFromArray((np.arange(60).reshape(3, 4, 5) % 3).astype(np.uint8))
    for folder, img in (("imagesTr", image), ("labelsTr", label)):
        (task / folder).mkdir(parents=True)
        sitk.WriteImage(img, str(task / folder / "hippocampus_001.nii.gz"))
    desc = {"modality": {"0": "MRI"}, "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}
    (task / "dataset.json").write_text(json.dumps(desc))
    out = convert_msd(task, tmp_path / "raw", num_workers=1)
    assert out.name == "Dataset004_Hippocampus"
    copied = out / "imagesTr" / "hippocampus_001_0000.nii.gz"
    assert copied.read_bytes() == (task / "imagesTr" / "hippocampus_001.nii.gz").read_bytes()
    assert main(["validate", str(out)]) == 0


def test_msd_dataset_names() -> None:
    assert msd_dataset_name("/x/Task04_Hippocampus", None, None) == "Dataset004_Hippocampus"
    assert msd_dataset_name("/x/Task10_Colon", 110, None) == "Dataset110_Colon"
    assert msd_dataset_name("/x/whatever", 7, "Mine") == "Dataset007_Mine"
    with pytest.raises(ValueError, match="not TaskXX_Name; give -d ID and --name NAME"):
        msd_dataset_name("/x/whatever", None, None)
    with pytest.raises(ValueError, match=r"must be 0\.\.999"):
        msd_dataset_name("/x/Task04_Hippocampus", 1000, None)


def test_msd_refuses_to_overwrite_or_clash(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path / "msd", num_train=1, num_test=0)
    convert_msd(task, tmp_path / "raw", num_workers=1)
    with pytest.raises(ValueError, match="already exists"):
        convert_msd(task, tmp_path / "raw", num_workers=1)
    with pytest.raises(ValueError, match="same ID"):
        convert_msd(task, tmp_path / "raw", name="Other", num_workers=1)
    assert convert_msd(task, tmp_path / "raw", dataset_id=2, num_workers=1).name == "Dataset002_BrainTumour"


def test_msd_errors_list_every_bad_case_and_leave_nothing(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path / "msd", num_train=3, num_test=0)
    write_4d(task / "imagesTr" / "BRATS_001.nii.gz", np.zeros((3, 6, 7, 8), np.float32))
    (task / "labelsTr" / "BRATS_002.nii.gz").unlink()
    with pytest.raises(ValueError, match="2 case") as info:
        convert_msd(task, tmp_path / "raw", num_workers=1)
    assert "BRATS_001.nii.gz: 4D image, 3 channel(s); dataset.json lists 2" in str(info.value)
    assert "BRATS_002.nii.gz: no label" in str(info.value)
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").iterdir())


def test_msd_without_dataset_json(tmp_path: Path) -> None:
    (tmp_path / "Task01_X").mkdir()
    with pytest.raises(FileNotFoundError, match=r"dataset\.json does not exist"):
        convert_msd(tmp_path / "Task01_X", tmp_path / "raw")
