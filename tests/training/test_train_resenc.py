"""The residual-encoder U-Net trains through the unchanged trainer, and predicts, on an easy task."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autoseg.inference.model import load_fold_network
from autoseg.io.dataset import load_raw_dataset
from autoseg.nets import ResidualEncoderUNet
from autoseg.planning.presets import PlannerConfig
from autoseg.planning.splits import make_splits
from autoseg.planning.stages import DatasetFolders, run_fingerprint, run_plan, run_preprocess
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset
from autoseg.training.config import TrainerConfig
from autoseg.training.setup import FoldSpec, fold_cases, train_fold

# nnU-Net's ResEnc layout (stem, 1-3-4-6 residual blocks, one decoder conv) with narrow stages and
# the 5 % batch cap, so that a CPU test stays short.
RESENC_SMALL = PlannerConfig(
    name="resenc-test",
    network="resenc",
    base_features=16,
    blocks_per_stage_encoder=(1, 3, 4, 6),
    blocks_per_stage_decoder=(1,),
    configurations=("3d_fullres",),
)


@pytest.fixture(scope="module")
def resenc_task(tmp_path_factory: pytest.TempPathFactory) -> FoldSpec:
    root = tmp_path_factory.mktemp("resenc")
    spec = SyntheticSpec(num_cases=10, classes=1, shape=(24, 32, 32), noise=0.05, distractors=False, seed=7)
    raw = generate_dataset(root / "raw" / "Dataset921_EasyResEnc", spec)
    folders = DatasetFolders.for_dataset(root / "pre", load_raw_dataset(raw))
    run_fingerprint(raw, folders, num_workers=1)
    plans, _ = run_plan(folders, RESENC_SMALL)
    run_preprocess(raw, folders, plans, ["3d_fullres"], num_workers=1)
    names = list(plans.case_names)
    train, val = fold_cases(make_splits(names, 5), 0, names)
    return FoldSpec(folders.root, plans, "3d_fullres", 0, tuple(train), tuple(val), root / "fold_0")


def test_resenc_plan_learns_an_easy_task(resenc_task: FoldSpec, tmp_path: Path) -> None:
    arch = resenc_task.plans.configuration("3d_fullres").architecture
    assert arch.network == "resenc" and arch.blocks_per_stage_encoder[:3] == (1, 3, 4)
    cfg = TrainerConfig(
        epochs=5,
        iterations_per_epoch=10,
        val_iterations=1,
        num_workers=0,
        amp=False,
        tta_mirroring=False,
        lr=0.01,
        seed=1,
    )
    spec = replace(resenc_task, output=tmp_path / "trained")
    train_fold(spec, cfg, torch.device("cpu"))
    trained = json.loads((spec.output / "validation" / "summary.json").read_text())
    untrained_spec = replace(resenc_task, output=tmp_path / "untrained")
    train_fold(untrained_spec, replace(cfg, epochs=1, lr=0.0), torch.device("cpu"))
    untrained = json.loads((untrained_spec.output / "validation" / "summary.json").read_text())
    scores = (trained["foreground_mean"], untrained["foreground_mean"])
    assert scores[0] > 0.8 and scores[1] < 0.5, scores
    # the predictor's loader rebuilds the same network from the checkpoint (strict state dict)
    net, meta = load_fold_network(spec.output / "checkpoint_final.pt", torch.device("cpu"), expected=arch)
    assert isinstance(net, ResidualEncoderUNet) and meta["architecture"]["network"] == "resenc"
    patch = meta["patch_size"]
    with torch.no_grad():
        assert net(torch.zeros(1, 1, *patch)).shape == (1, 2, *patch)
