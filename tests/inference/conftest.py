"""A briefly trained easy synthetic model (2 folds of 3d_fullres and 2d, find-best run), shared by the
inference tests, and an oracle network for geometry tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoseg.cli import main
from autoseg.synthetic.dataset import generate_dataset
from tests.presets import easy_spec, fast_overrides

TRAIN = fast_overrides()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An easy task, planned with 2 folds, both folds of 3d_fullres and 2d trained briefly, find-best run."""
    root = tmp_path_factory.mktemp("chain")
    raw = generate_dataset(root / "raw" / "Dataset930_Chain", easy_spec(8, seed=11))
    paths = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'results'}", "num_folds=2"]
    assert main(["plan", str(raw), *paths, "-c", "3d_fullres", "2d", "--num-workers", "1"]) == 0
    for config, extra in (("3d_fullres", ["trainer.validation_png=true"]), ("2d", ["trainer.batch_size=8"])):
        for fold in ("0", "1"):
            assert main(["train", str(raw), config, fold, *paths, *TRAIN, *extra, "--device", "cpu"]) == 0
    assert main(["find-best", str(raw), *paths, "--num-workers", "1"]) == 0
    heldout = generate_dataset(root / "raw" / "Dataset931_Heldout", easy_spec(3, seed=99))
    return {"raw": raw, "results": root / "results" / raw.name, "heldout": heldout, "root": root}


class ThresholdNet(torch.nn.Module):
    """An oracle: class 1 wherever the normalised intensity of channel 0 exceeds ``threshold``."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = (x[:, :1] - self.threshold) * 20
        return torch.cat([-fg, fg], dim=1)
