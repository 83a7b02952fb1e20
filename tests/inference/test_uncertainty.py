"""``autoseg predict --uncertainty``: maps in the input's geometry, highest at the structures' borders;
saved probabilities calibrated with find-best's temperature, masks bit for bit those of a run without
it on every backend (the members come from the same prediction engine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from autoseg.cli import main
from autoseg.io.images import read_geometry, read_image
from autoseg.io.probabilities import load_probabilities


@pytest.fixture(scope="module")
def predicted(trained: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("uncertainty")
    base = ["-i", str(trained["heldout"] / "imagesTr"), "-m", str(trained["results"]), "-c", "3d_fullres"]
    base += ["--device", "cpu"]
    out = {"plain": root / "plain", "folds": root / "folds", "mirrors": root / "mirrors"}
    assert main(["predict", *base, "-o", str(out["plain"]), "--no-tta"]) == 0
    assert (
        main(["predict", *base, "-o", str(out["folds"]), "--no-tta", "--uncertainty", "--save-probabilities"])
        == 0
    )
    assert main(["predict", *base, "-o", str(out["mirrors"]), "-f", "0", "--uncertainty"]) == 0
    return out


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_masks_are_bit_identical_with_uncertainty(
    trained: dict[str, Path], tmp_path: Path, backend: str
) -> None:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    base = ["-i", str(trained["heldout"] / "imagesTr"), "-m", str(trained["results"]), "-c", "3d_fullres"]
    base += ["--device", "cpu", "--backend", backend]  # both folds with TTA: members are folds x mirrors
    assert main(["predict", *base, "-o", str(tmp_path / "plain")]) == 0
    assert main(["predict", *base, "-o", str(tmp_path / "maps"), "--uncertainty"]) == 0
    record = json.loads((tmp_path / "maps" / "predict.json").read_text())
    assert record["uncertainty"]["members"] == {"3d_fullres": "folds x TTA mirrors"}
    assert record["failed"] == 0 and len(record["cases"]) == 3
    for entry in record["cases"]:
        plain = read_image(tmp_path / "plain" / f"{entry['case']}.nii.gz")[0]
        mask = read_image(tmp_path / "maps" / f"{entry['case']}.nii.gz")[0]
        assert plain.dtype == mask.dtype and np.array_equal(plain, mask)
        disagreement = read_image(tmp_path / "maps" / "uncertainty" / f"{entry['case']}_disagreement.nii.gz")[
            0
        ]
        assert disagreement.max() > 0  # 16 members: they disagree somewhere


def _boundary_and_interior(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fg = label > 0
    boundary = binary_dilation(fg, iterations=1) & ~binary_erosion(fg, iterations=1)
    return boundary, binary_erosion(fg, iterations=2)


@pytest.mark.parametrize("kind", ["folds", "mirrors"])
def test_maps_have_the_input_geometry_and_peak_at_the_boundary(
    predicted: dict[str, Path], trained: dict[str, Path], kind: str
) -> None:
    folder = predicted[kind]
    record = json.loads((folder / "predict.json").read_text())
    assert record["uncertainty"]["members"] == {"3d_fullres": "folds" if kind == "folds" else "TTA mirrors"}
    pooled: dict[str, dict[str, list[np.ndarray]]] = {"entropy": {}, "disagreement": {}}
    for entry in record["cases"]:
        case = entry["case"]
        geometry = read_geometry(trained["heldout"] / "imagesTr" / f"{case}_0000.nii.gz")[0]
        label = read_image(trained["heldout"] / "labelsTr" / f"{case}.nii.gz")[0]
        boundary, interior = _boundary_and_interior(label)
        for name in pooled:
            image, geom = read_image(folder / "uncertainty" / f"{case}_{name}.nii.gz")
            assert geom.shape == geometry.shape and np.allclose(geom.spacing, geometry.spacing)
            assert np.allclose(geom.origin, geometry.origin) and np.allclose(
                geom.direction, geometry.direction
            )
            assert image.dtype == np.float32 and image.min() >= 0
            pooled[name].setdefault("boundary", []).append(image[boundary])
            pooled[name].setdefault("interior", []).append(image[interior])
        summary = entry["uncertainty"]
        assert 0 <= summary["mean_entropy_in_foreground"] <= 1
        assert summary["high_uncertainty_ml"] >= 0
    for name, parts in pooled.items():
        edge, inside = np.concatenate(parts["boundary"]), np.concatenate(parts["interior"])
        assert inside.size >= 10
        assert edge.mean() > 1.5 * inside.mean() + 1e-4, (
            f"{name}: boundary {edge.mean()}, interior {inside.mean()}"
        )


def test_masks_do_not_change_and_saved_probabilities_are_calibrated(
    predicted: dict[str, Path], trained: dict[str, Path], tmp_path: Path
) -> None:
    # the maps sit in uncertainty/, so the output folder still evaluates as masks only
    labels = str(trained["heldout"] / "labelsTr")
    assert main(["evaluate", str(predicted["folds"]), labels, "-o", str(tmp_path / "summary.json")]) == 0
    selection = json.loads((trained["results"] / "selection.json").read_text())
    fit = selection["calibration"]["3d_fullres"]
    assert fit["temperature"] > 0 and fit["ece_after"] <= fit["ece_before"]
    record = json.loads((predicted["folds"] / "predict.json").read_text())
    assert record["probability_temperature"] == pytest.approx(fit["temperature"])
    for entry in record["cases"]:
        case = entry["case"]
        plain = read_image(predicted["plain"] / f"{case}.nii.gz")[0]
        mask = read_image(predicted["folds"] / f"{case}.nii.gz")[0]
        assert np.array_equal(plain, mask)  # --uncertainty changes no mask
        probabilities = load_probabilities(predicted["folds"] / f"{case}.npz")
        top2 = np.sort(probabilities, axis=0)[-2:]
        differ = probabilities.argmax(0) != mask  # calibrated: the argmax is the mask, but for
        assert np.all(top2[1][differ] - top2[0][differ] < 2e-3)  # near-ties rounded to float16
