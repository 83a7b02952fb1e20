"""A briefly trained easy synthetic model (2 folds of 3d_fullres and 2d, find-best run), shared by the
inference tests, and an oracle network for geometry tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoseg.cli import main
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

EASY = {"classes": 1, "shape": (24, 32, 32), "noise": 0.05, "distractors": False}
TRAIN = [
    "trainer.epochs=5",
    "trainer.iterations_per_epoch=10",
    "trainer.val_iterations=1",
    "trainer.num_workers=0",
    "trainer.tta_mirroring=false",
    "trainer.seed=1",
]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An easy task, planned with 2 folds, both folds of 3d_fullres and 2d trained briefly, find-best run."""
    root = tmp_path_factory.mktemp("chain")
    raw = generate_dataset(root / "raw" / "Dataset930_Chain", SyntheticSpec(num_cases=8, seed=11, **EASY))  # type: ignore[arg-type]
    paths = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'results'}", "num_folds=2"]
    assert main(["plan", str(raw), *paths, "-c", "3d_fullres", "2d", "--num-workers", "1"]) == 0
    for config, extra in (("3d_fullres", ["trainer.validation_png=true"]), ("2d", ["trainer.batch_size=8"])):
        for fold in ("0", "1"):
            assert main(["train", str(raw), config, fold, *paths, *TRAIN, *extra, "--device", "cpu"]) == 0
    assert main(["find-best", str(raw), *paths, "--num-workers", "1"]) == 0
    heldout = generate_dataset(
        root / "raw" / "Dataset931_Heldout", SyntheticSpec(num_cases=3, seed=99, **EASY)
    )  # type: ignore[arg-type]
    return {"raw": raw, "results": root / "results" / raw.name, "heldout": heldout, "root": root}


class ThresholdNet(torch.nn.Module):
    """An oracle: class 1 wherever the normalised intensity of channel 0 exceeds ``threshold``."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = (x[:, :1] - self.threshold) * 20
        return torch.cat([-fg, fg], dim=1)
