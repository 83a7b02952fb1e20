"""Region-based training end to end (BraTS-like nested regions, two channels) through the CLI: plan,
train two folds, find-best, predict with probabilities; every region learned, label map in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoseg.cli import main
from autoseg.io.images import read_image
from autoseg.io.probabilities import load_probabilities
from autoseg.synthetic.labels import BRATS_LABELS, generate_regions_dataset

TRAIN = [
    "trainer.epochs=5",
    "trainer.iterations_per_epoch=10",
    "trainer.val_iterations=1",
    "trainer.num_workers=0",
    "trainer.tta_mirroring=false",
    "trainer.seed=1",
]
REGIONS = {name: values for name, values in BRATS_LABELS.items() if name != "background"}


def _dice(pred: np.ndarray, ref: np.ndarray, values: list[int]) -> float:
    p, r = np.isin(pred, values), np.isin(ref, values)
    return float(2 * (p & r).sum() / max(p.sum() + r.sum(), 1))


@pytest.fixture(scope="module")
def brats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("regions")
    raw = generate_regions_dataset(root / "raw" / "Dataset950_Brats", num_cases=8, seed=0)
    heldout = generate_regions_dataset(root / "raw" / "Dataset951_Heldout", num_cases=2, seed=5)
    paths = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'results'}", "num_folds=2"]
    assert main(["plan", str(raw), *paths, "-c", "3d_fullres", "--num-workers", "1"]) == 0
    for fold in ("0", "1"):
        assert main(["train", str(raw), "3d_fullres", fold, *paths, *TRAIN, "--device", "cpu"]) == 0
    assert main(["find-best", str(raw), *paths, "--num-workers", "1"]) == 0
    results = root / "results" / raw.name
    return {"raw": raw, "pre": root / "pre" / raw.name, "results": results, "heldout": heldout}


def test_plans_record_the_regions(brats: dict[str, Path]) -> None:
    plans = json.loads((brats["pre"] / "default" / "plans.json").read_text())
    assert plans["regions_class_order"] == [1, 2, 3] and plans["labels"] == BRATS_LABELS


def test_every_region_is_learned(brats: dict[str, Path]) -> None:
    cv = json.loads((brats["results"] / "default" / "3d_fullres" / "cv_summary.json").read_text())
    dice = {name: m["dice"] for name, m in cv["mean"].items()}
    print(f"cross-validation Dice per region: {dice}")
    assert set(dice) == set(REGIONS)
    assert all(d > 0.8 for d in dice.values()), dice
    selection = json.loads((brats["results"] / "selection.json").read_text())
    assert selection["configurations"] == ["3d_fullres"]


def test_predict_writes_the_label_map_in_region_order(brats: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pred"
    images = brats["heldout"] / "imagesTr"
    args = ["-i", str(images), "-o", str(out), "-m", str(brats["results"]), "--save-probabilities"]
    assert main(["predict", *args]) == 0
    for case in ("case_000", "case_001"):
        predicted, _ = read_image(out / f"{case}.nii.gz")
        reference, _ = read_image(brats["heldout"] / "labelsTr" / f"{case}.nii.gz")
        assert set(np.unique(predicted).tolist()) == {0, 1, 2, 3}  # later regions painted over earlier
        for name, values in REGIONS.items():
            assert _dice(predicted, reference, values) > 0.8, (case, name)
        probabilities = load_probabilities(out / f"{case}.npz")
        assert probabilities.shape == (3, *predicted.shape)  # one sigmoid per region, no background
        # nested regions: a voxel in the enhancing region is in the core and the whole tumour too
        inside = probabilities[2] > 0.5
        assert all((probabilities[r][inside] > 0.5).mean() > 0.99 for r in (0, 1))
