"""Preprocessing steps chosen in the plan: registries, histogram standardisation and denoising, and a
plan with both that trains the synthetic task and predicts with exactly the same steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.cli import main
from autoseg.contracts import Plans, PlansError
from autoseg.io.images import read_image
from autoseg.preprocessing.normalize import get_normalizer
from autoseg.preprocessing.steps import PreprocessingChoice, denoise, histogram_standardize
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

EASY = {"classes": 1, "shape": (24, 32, 32), "noise": 0.3, "distractors": False}
TRAIN = [
    "trainer.epochs=5",
    "trainer.iterations_per_epoch=10",
    "trainer.val_iterations=1",
    "trainer.num_workers=0",
    "trainer.tta_mirroring=false",
    "trainer.seed=1",
]


def test_choices_are_validated_with_the_nearest_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'nlmeans'"):
        PreprocessingChoice(denoise="nlmean")
    with pytest.raises(ValueError, match="did you mean 'histogram'"):
        PreprocessingChoice(normalization="histogramm")
    with pytest.raises(ValueError, match=r"\['radius'\] are not arguments of median"):
        PreprocessingChoice(denoise="median", denoise_params={"radius": 2})
    with pytest.raises(ValueError, match="did you mean 'zscore'"):
        get_normalizer("zscor")


def test_denoisers_reduce_noise_and_keep_the_shape() -> None:
    rng = np.random.default_rng(0)
    clean = np.zeros((1, 16, 20, 20), np.float32)
    clean[0, 4:12, 5:15, 5:15] = 10.0
    noisy = clean + rng.normal(0, 1.0, clean.shape).astype(np.float32)
    for spec in ({"name": "gaussian", "sigma": 1.0}, {"name": "median", "size": 3}, {"name": "nlmeans"}):
        out = denoise(noisy, spec)
        assert out.shape == noisy.shape and out.dtype == np.float32
        assert np.abs(out - clean).mean() < 0.8 * np.abs(noisy - clean).mean(), spec
    assert denoise(noisy, None) is noisy


def test_histogram_standardisation_maps_different_scanners_onto_one_scale() -> None:
    rng = np.random.default_rng(1)
    base = rng.gamma(4.0, 10.0, (12, 16, 16)).astype(np.float32)
    landmarks = np.linspace(0, 100, 13)
    a = histogram_standardize(base, landmarks)
    b = histogram_standardize(base * 3.0 + 50.0, landmarks)  # the same anatomy, another scanner's scale
    assert np.allclose(a, b, atol=1e-3)
    # the median of the landmark voxels (above the mean) lands on the landmark of the 50th percentile
    # (TorchIO's landmarks: the 0th, 1st, 10th, 20th, ..., 90th, 99th and 100th percentiles)
    assert abs(float(np.median(a[base > base.mean()])) - landmarks[6]) < 1.0


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("steps")
    raw = generate_dataset(root / "raw" / "Dataset940_Steps", SyntheticSpec(num_cases=8, seed=4, **EASY))  # type: ignore[arg-type]
    paths = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'results'}", "num_folds=2"]
    steps = ["preprocessing.normalization=histogram", "preprocessing.denoise=median"]
    assert main(["plan", str(raw), *paths, *steps, "-c", "3d_fullres", "--num-workers", "1"]) == 0
    return {"raw": raw, "root": root, "pre": root / "pre" / raw.name, "results": root / "results" / raw.name}


def test_plan_records_the_steps_and_refuses_missing_landmarks(planned: dict[str, Path]) -> None:
    plans_file = planned["pre"] / "default" / "plans.json"
    data = json.loads(plans_file.read_text())
    conf = data["configurations"]["3d_fullres"]
    assert conf["normalization_schemes"] == ["histogram"]
    assert conf["preprocessing"] == {"denoise": {"name": "median"}}
    assert len(data["histogram_landmarks"]["0"]) == 13
    assert data["run"]["config"]["preprocessing"]["denoise"] == "median"
    del data["histogram_landmarks"]
    with pytest.raises(PlansError, match="histogram_landmarks has none"):
        Plans.from_dict(data)


def test_trains_and_predicts_with_the_same_steps(planned: dict[str, Path], tmp_path: Path) -> None:
    raw, paths = planned["raw"], [f"paths.preprocessed={planned['root'] / 'pre'}"]
    paths.append(f"paths.results={planned['root'] / 'results'}")
    assert main(["train", str(raw), "3d_fullres", "0", *paths, "num_folds=2", *TRAIN, "--device", "cpu"]) == 0
    summary = json.loads(
        (planned["results"] / "default/3d_fullres/fold_0/validation/summary.json").read_text()
    )
    assert summary["foreground_mean"] > 0.7, summary["mean"]

    # prediction preprocesses a raw case exactly as training's preprocessed copy of it
    from autoseg.inference.model import open_model
    from autoseg.inference.predictor import ConfigurationPredictor
    from autoseg.preprocessing.storage import load_case

    with open_model(planned["results"]) as model:
        predictor = ConfigurationPredictor(model.configuration("3d_fullres"), ["0"], torch.device("cpu"))
    case = summary["cases"][0]["case"]
    image, geometry = read_image(raw / "imagesTr" / f"{case}_0000.nii.gz")
    data, _ = predictor.preprocess(case, image[None], geometry)
    stored, _, _, _ = load_case(planned["pre"] / "default" / "3d_fullres", case)
    assert np.allclose(data, stored, atol=1e-5)
    undenoised = Plans.load(planned["pre"] / "default" / "plans.json")
    assert undenoised.configuration("3d_fullres").preprocessing["denoise"]["name"] == "median"

    out = tmp_path / "pred"
    fast = ["-c", "3d_fullres", "-f", "0", "--no-tta", "--device", "cpu"]
    assert (
        main(["predict", "-i", str(raw / "imagesTr"), "-o", str(out), "-m", str(planned["results"]), *fast])
        == 0
    )
    prediction, _ = read_image(out / f"{case}.nii.gz")
    reference, _ = read_image(raw / "labelsTr" / f"{case}.nii.gz")
    dice = 2 * ((prediction > 0) & (reference > 0)).sum() / ((prediction > 0).sum() + (reference > 0).sum())
    assert dice > 0.7
