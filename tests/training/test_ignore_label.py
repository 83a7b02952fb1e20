"""The ignore label end to end: half the label voxels unannotated train as well as full labels, and the
ignore value never appears in a prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.io.dataset import load_raw_dataset
from autoseg.io.images import read_image
from autoseg.planning.presets import PlannerConfig
from autoseg.planning.splits import make_splits
from autoseg.planning.stages import DatasetFolders, run_fingerprint, run_plan, run_preprocess
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset
from autoseg.synthetic.labels import add_ignore_label
from autoseg.training.config import TrainerConfig
from autoseg.training.setup import FoldSpec, fold_cases, train_fold

CFG = TrainerConfig(
    epochs=5,
    iterations_per_epoch=10,
    val_iterations=1,
    num_workers=0,
    amp=False,
    tta_mirroring=False,
    lr=0.01,
    seed=1,
)


def _prepare(raw: Path, pre: Path) -> FoldSpec:
    folders = DatasetFolders.for_dataset(pre, load_raw_dataset(raw))
    run_fingerprint(raw, folders, num_workers=1)
    plans, _ = run_plan(folders, PlannerConfig(configurations=("3d_fullres",)))
    run_preprocess(raw, folders, plans, ["3d_fullres"], num_workers=1)
    names = list(plans.case_names)
    train, val = fold_cases(make_splits(names, 5), 0, names)
    return FoldSpec(folders.root, plans, "3d_fullres", 0, tuple(train), tuple(val), pre / "out", raw)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FoldSpec]:
    root = tmp_path_factory.mktemp("ignore")
    spec = SyntheticSpec(num_cases=10, classes=1, shape=(24, 32, 32), noise=0.05, distractors=False, seed=7)
    full = generate_dataset(root / "raw" / "Dataset940_Full", spec)
    sparse = add_ignore_label(full, root / "raw" / "Dataset941_Sparse")
    return {"full": _prepare(full, root / "pre_full"), "sparse": _prepare(sparse, root / "pre_sparse")}


def test_half_unannotated_learns_like_fully_labelled(tasks: dict[str, FoldSpec]) -> None:
    sparse = tasks["sparse"]
    assert sparse.plans.labels.ignore_label == 2 and sparse.plans.labels.num_outputs == 2
    labels = [read_image(sparse.raw_root / "labelsTr" / f"{c}.nii.gz")[0] for c in sparse.val_cases]  # type: ignore[operator]
    assert 0.4 < np.mean([(lab == 2).mean() for lab in labels]) < 0.6  # half the voxels unannotated
    dice = {}
    for name, spec in tasks.items():
        train_fold(spec, CFG, torch.device("cpu"))
        summary = json.loads((spec.output / "validation" / "summary.json").read_text())
        assert summary["resolution"] == "native"
        dice[name] = summary["foreground_mean"]
    print(f"final-validation foreground Dice: {dice}")
    assert dice["full"] > 0.8, dice
    assert dice["sparse"] > dice["full"] - 0.05, dice
    for case in sparse.val_cases:
        predicted, _ = read_image(sparse.output / "validation" / f"{case}.nii.gz")
        assert set(np.unique(predicted).tolist()) <= {0, 1}, case
    evaluation = json.loads((sparse.output / "validation" / "evaluation.json").read_text())
    assert evaluation["ignore_label"] == 2 and set(evaluation["mean"]) == {"class_1"}
