"""Training the 3d cascade's second stage on the out-of-fold 3d_lowres maps."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.cascade.next_stage import to_preprocessed_grid
from autoseg.cli import main
from autoseg.data import AugmentConfig, Augmenter
from autoseg.data.loader import BatchDataset
from autoseg.data.sampling import PatchSampler
from autoseg.io.images import read_image
from autoseg.preprocessing.storage import read_properties
from autoseg.training.cascade import CascadeCases, CascadeDecoder, CascadeInputs

# a lowres stage at 2 mm (the threshold alone would plan a degenerate 1-voxel one on 28x41x42 images)
FORCE_LOWRES = [
    "planner.lowres_threshold=2.0",
    "3d_lowres.spacing=[2.0,2.0,2.0]",
    "-c",
    "3d_fullres",
    "3d_lowres",
]
QUICK = [
    "--trainer",
    "quick",
    "trainer.epochs=1",
    "trainer.iterations_per_epoch=2",
    "trainer.val_iterations=1",
]


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    root = tmp_path_factory.mktemp("cascade")
    raw = generate_dataset(root / "Dataset973_Cascade", SyntheticSpec(num_cases=4, classes=1))
    paths = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'res'}", "num_folds=2"]
    assert main(["plan", str(raw), *paths, *FORCE_LOWRES, "--num-workers", "1"]) == 0
    return raw, paths


def test_the_previous_map_is_augmented_as_a_label_with_the_target(planned: tuple[Path, list[str]]) -> None:
    """With the reference as the previous map, the uncorrupted extra channel equals the augmented
    target voxel for voxel (same nearest-voxel transform, no intensity transform), and a batch is a
    function of (seed, k)."""
    raw, paths = planned
    folder = Path(paths[0].split("=", 1)[1]) / raw.name / "default" / "3d_fullres"
    names = [f"case_{i:03d}" for i in range(4)]
    maps = {
        n: to_preprocessed_grid(read_image(raw / "labelsTr" / f"{n}.nii.gz")[0], read_properties(folder, n))
        for n in names
    }
    inputs = CascadeInputs(Path("unused"), "3d_lowres", ".nii.gz", ((1,),), base=2)
    patch = [16, 24, 24]
    config = dataclasses.replace(AugmentConfig(), p_rotation=1.0, p_scaling=1.0)
    augmenter = Augmenter(patch, config, num_channels=1)
    sampler = PatchSampler(CascadeCases(folder, names, maps, 2), patch, 2, 0.5, augmenter.crop_size, None)
    plain = BatchDataset(sampler, augmenter, seed=3, post=CascadeDecoder(inputs, corrupt=False))
    corrupted = BatchDataset(sampler, augmenter, seed=3, post=CascadeDecoder(inputs, corrupt=True))
    differs = 0
    for k in range(4):
        item = plain[k]
        assert item["image"].shape == (2, 2, *patch) and item["target"].shape == (2, 1, *patch)
        torch.testing.assert_close(item["image"][:, 1:], item["target"].float())
        assert item["target"].max() <= 1  # the decoded target holds labels, not joint codes
        again = corrupted[k]
        torch.testing.assert_close(again["image"], corrupted[k]["image"])  # (seed, k) -> the same batch
        torch.testing.assert_close(again["image"][:, :1], item["image"][:, :1])  # image channel untouched
        differs += int(not torch.equal(again["image"][:, 1:], item["image"][:, 1:]))
    assert differs > 0  # the corruption happens on training batches
    with pytest.raises(ValueError, match="workers only"):  # the decoding needs the augmented joint map
        BatchDataset(sampler, augmenter, seed=3, augment_on_device=True, post=CascadeDecoder(inputs, True))


def test_train_the_cascade_after_every_lowres_fold_rank_predict_and_export(
    planned: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """lowres (both folds) -> cascade (both folds) -> find-best ranks it -> predict runs lowres then the
    cascade, from the results and from an archive of the cascade alone (which carries lowres)."""
    raw, paths = planned
    assert main(["train", str(raw), "3d_lowres", "0", *paths, *QUICK, "--device", "cpu"]) == 0
    assert main(["train", str(raw), "3d_cascade_fullres", "0", *paths, *QUICK, "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "2 case(s) have no 3d_lowres prediction" in err and "3d_lowres all-folds" in err
    assert main(["train", str(raw), "3d_lowres", "1", *paths, *QUICK, "--device", "cpu"]) == 0
    assert main(["train", str(raw), "3d_cascade_fullres", "0", *paths, *QUICK, "--device", "cpu"]) == 0
    fold = Path(paths[1].split("=", 1)[1]) / raw.name / "default" / "3d_cascade_fullres" / "fold_0"
    checkpoint = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert checkpoint["in_channels"] == 2  # one image channel + one foreground class
    first = next(v for k, v in checkpoint["network"].items() if k.endswith("weight") and v.ndim == 5)
    assert first.shape[1] == 2
    assert (fold / "validation" / "summary.json").is_file()
    assert main(["train", str(raw), "3d_cascade_fullres", "1", *paths, *QUICK, "--device", "cpu"]) == 0
    results = Path(paths[1].split("=", 1)[1]) / raw.name
    assert main(["find-best", str(raw), *paths]) == 0
    selection = json.loads((results / "selection.json").read_text())
    ranked = [" + ".join(c["configurations"]) for c in selection["candidates"]]
    assert "3d_cascade_fullres" in ranked and "3d_lowres" in ranked, ranked
    cv = json.loads((results / "default" / "3d_cascade_fullres" / "cv_summary.json").read_text())
    assert len(cv["cases"]) == 4  # every training case once, out of fold

    fast = ["-c", "3d_cascade_fullres", "--no-tta"]
    direct, from_archive = tmp_path / "direct", tmp_path / "archive"
    assert main(["predict", "-i", str(raw / "imagesTr"), "-o", str(direct), "-m", str(results), *fast]) == 0
    archive = tmp_path / "model.zip"
    assert main(["export-model", str(raw), "-o", str(archive), "-c", "3d_cascade_fullres", *paths]) == 0
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "default/3d_lowres/fold_1/checkpoint_final.pt" in names  # the previous stage travels along
    assert (
        main(["predict", "-i", str(raw / "imagesTr"), "-o", str(from_archive), "-m", str(archive), *fast])
        == 0
    )
    for case in ("case_000", "case_003"):
        mask, _ = read_image(direct / f"{case}.nii.gz")
        assert mask.shape == read_image(raw / "labelsTr" / f"{case}.nii.gz")[0].shape
        np.testing.assert_array_equal(mask, read_image(from_archive / f"{case}.nii.gz")[0])
    (results / "default" / "3d_lowres").rename(results / "default" / "lowres_aside")
    capsys.readouterr()
    assert (
        main(["predict", "-i", str(raw / "imagesTr"), "-o", str(tmp_path / "x"), "-m", str(results), *fast])
        == 1
    )
    assert "needs its previous stage 3d_lowres" in capsys.readouterr().err
