"""The 3d cascade's hand-over: lowres maps written by the final validation, found per training case,
and brought into the next stage's preprocessed grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoseg.cascade.next_stage import previous_stage_prediction, to_preprocessed_grid
from autoseg.cli import main
from autoseg.contracts import Plans
from autoseg.io.images import Geometry, read_image
from autoseg.io.validation import LoadedCase
from autoseg.preprocessing.preprocess import preprocess_case
from tests.preprocessing.test_preprocess import DIRECTION, ORIGIN, make_case, make_plans


def test_a_native_map_lands_on_the_preprocessed_grid_of_its_case() -> None:
    """Transposed, cropped and resampled as the preprocessing does with the case's own label."""
    image, label = make_case((40, 36, 12), (0.8, 0.9, 3.0), seed=1)
    geometry = Geometry(shape=image.shape, spacing=(0.8, 0.9, 3.0), origin=ORIGIN, direction=DIRECTION)
    plans = Plans.from_dict(make_plans([2.0, 1.1, 1.2], [2, 0, 1]))
    _, seg, props = preprocess_case(LoadedCase("c", image[None], label, geometry), plans, "3d_fullres")
    assert seg is not None
    grid = to_preprocessed_grid(label, props)
    assert grid.shape == seg.shape
    inside = seg >= 0  # the preprocessing marks voxels outside the non-zero mask -1
    assert np.mean(grid[inside] == seg[inside]) > 0.99
    assert set(np.unique(grid[~inside])) <= {0}
    with pytest.raises(ValueError, match="another image"):
        to_preprocessed_grid(label[:-1], props)


def test_a_missing_previous_prediction_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="autoseg train DATASET 3d_lowres all-folds"):
        previous_stage_prediction(tmp_path, "3d_lowres", "case_001", ".nii.gz")


def test_lowres_final_validation_writes_the_next_stage_maps(tmp_path: Path) -> None:
    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    raw = generate_dataset(tmp_path / "Dataset974_Lowres", SyntheticSpec(num_cases=4, classes=1))
    paths = [f"paths.preprocessed={tmp_path / 'pre'}", f"paths.results={tmp_path / 'res'}", "num_folds=2"]
    # a lowres stage at 2 mm (the threshold alone would plan a degenerate 1-voxel one on 28x41x42 images)
    force_lowres = [
        "planner.lowres_threshold=2.0",
        "3d_lowres.spacing=[2.0,2.0,2.0]",
        "-c",
        "3d_fullres",
        "3d_lowres",
    ]
    assert main(["plan", str(raw), *paths, *force_lowres, "--num-workers", "1"]) == 0
    quick = [
        "--trainer",
        "quick",
        "trainer.epochs=1",
        "trainer.iterations_per_epoch=1",
        "trainer.val_iterations=1",
    ]
    assert main(["train", str(raw), "3d_lowres", "0", *paths, *quick, "--device", "cpu"]) == 0
    plans_results = tmp_path / "res" / raw.name / "default"
    folder = plans_results / "3d_lowres" / "fold_0" / "predicted_next_stage"
    index = json.loads((folder / "index.json").read_text())
    assert index["configuration"] == "3d_lowres" and index["next_stage"] == "3d_cascade_fullres"
    assert len(index["cases"]) == 2
    for case in index["cases"]:
        path = previous_stage_prediction(plans_results, "3d_lowres", case, ".nii.gz")
        seg, _ = read_image(path)
        assert seg.shape == read_image(raw / "labelsTr" / f"{case}.nii.gz")[0].shape  # native geometry
        validation, _ = read_image(plans_results / "3d_lowres" / "fold_0" / "validation" / f"{case}.nii.gz")
        np.testing.assert_array_equal(seg, validation)
    with pytest.raises(FileNotFoundError, match="every fold"):  # fold 1 is not trained
        other = sorted(
            set(p.name.split("_0000")[0] for p in (raw / "imagesTr").iterdir()) - set(index["cases"])
        )
        previous_stage_prediction(plans_results, "3d_lowres", other[0], ".nii.gz")
