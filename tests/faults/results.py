"""A results folder that find-best, ensemble, evaluate, export-model and report can read, from the
fault scenario's trained fold: fold 0's checkpoints for both folds, and each fold's validation made
of the reference label maps (masks, one-hot probabilities, a validation summary).

The validation is not a network's (it is the reference), so find-best's scores are 1.0; what the
pre-flight, fuzz and kill tests need is a complete, real layout that the commands accept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from autoseg.io.images import read_image, write_image
from autoseg.io.probabilities import save_probabilities
from autoseg.utils.files import write_artifact
from tests.faults.driver import Scenario


def validated_results(scn: Scenario, results: Path, select: bool = False) -> Path:
    """``results/<Dataset>`` with folds 0 and 1 of 3d_fullres trained and validated (and with
    ``select``, ``autoseg find-best`` run on them); returns it."""
    model = results / scn.raw.name
    shutil.copytree(scn.model(), model)
    config = model / "default" / "3d_fullres"
    if not (config / "fold_1").exists():
        shutil.copytree(config / "fold_0", config / "fold_1")
    splits = json.loads((scn.preprocessed("ref") / "splits.json").read_text())["folds"]
    for k, fold in enumerate(splits):
        out = config / f"fold_{k}" / "validation"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for case in fold["val"]:
            seg, geom = read_image(scn.raw / "labelsTr" / f"{case}.nii.gz")
            write_image(seg, geom, out / f"{case}.nii.gz")
            onehot = np.stack([seg == 0, seg == 1]).astype(np.float32)
            save_probabilities(out / f"{case}.npz", onehot)
        cases = [{"case": c, "dice": {"1": 1.0}} for c in fold["val"]]
        write_artifact(out / "summary.json", "validation_summary", 2, {"cases": cases, "mean": {"1": 1.0}})
    if select:
        from autoseg.cli import main

        assert main(["find-best", str(scn.raw), *roots(scn, results), "--num-workers", "1"]) == 0
    return model


def roots(scn: Scenario, results: Path) -> list[str]:
    """The overrides that point a command at the scenario's preprocessed data and ``results``."""
    return [f"paths.preprocessed={scn.root / 'ref' / 'pre'}", f"paths.results={results}", "num_folds=2"]
