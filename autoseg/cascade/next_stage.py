"""The 3d cascade's hand-over: 3d_lowres predictions for the next stage (``3d_cascade_fullres``).

Design: the lowres stage hands over **native-geometry label maps**, the same files ``autoseg
predict`` writes. The final validation of a ``3d_lowres`` fold writes one per validation case to
``fold_<k>/predicted_next_stage/<case><ending>`` (with ``index.json``: configuration, fold, next
stage, cases). The next stage brings a map into its own preprocessed grid with
:func:`to_preprocessed_grid`, from the properties its preprocessing stored for that case (transpose,
crop box, spacing, resampled shape): one code path for training (out-of-fold validation maps) and
for prediction (the lowres prediction of the new image), and no second copy of the preprocessed
data per stage. nnU-Net instead writes ``predicted_next_stage/`` already resampled to the next
stage's spacing; both reach the same grid, as the resampling of a label map is the one of the
preprocessing.

Example:
    >>> path = previous_stage_prediction(results / "default", "3d_lowres", "case_003", ".nii.gz")
    >>> seg = to_preprocessed_grid(read_image(path)[0], read_properties(folder, "case_003"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoseg.cascade.previous_stage import to_preprocessed_grid
from autoseg.io.images import Geometry, write_image
from autoseg.utils.files import write_json

NEXT_STAGE_FOLDER = "predicted_next_stage"
__all__ = [
    "NEXT_STAGE_FOLDER",
    "previous_stage_prediction",
    "to_preprocessed_grid",
    "write_next_stage",
    "write_next_stage_index",
]


def write_next_stage(folder: Path, name: str, ending: str, seg: np.ndarray, geometry: Geometry) -> Path:
    """Write one validation case's label map (Z, Y, X, native geometry) for the next stage, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_image(seg, geometry, folder / f"{name}{ending}")


def write_next_stage_index(
    folder: Path, configuration: str, fold: str, next_stage: str, cases: Sequence[str]
) -> None:
    """``predicted_next_stage/index.json``: which stage wrote the maps, for which stage, which cases."""
    write_json(
        folder / "index.json",
        {"configuration": configuration, "fold": fold, "next_stage": next_stage, "cases": sorted(cases)},
    )


def previous_stage_prediction(plans_results: Path, previous: str, case: str, ending: str) -> Path:
    """The out-of-fold ``previous`` prediction of training case ``case``.

    Args:
        plans_results: ``<results>/<dataset>/<plans_name>``.
        previous: the previous stage's configuration, e.g. ``"3d_lowres"``.

    Raises:
        FileNotFoundError: no fold of ``previous`` has predicted ``case`` (its folds are not all
            trained), naming the command that fixes it.
    """
    found = sorted((plans_results / previous).glob(f"fold_*/{NEXT_STAGE_FOLDER}/{case}{ending}"))
    if not found:
        raise FileNotFoundError(
            f"no {previous} prediction of training case {case!r} under {plans_results / previous}"
            f"/fold_*/{NEXT_STAGE_FOLDER}/: the cascade needs {previous} trained on every fold first "
            f"(autoseg train DATASET {previous} all-folds)"
        )
    return found[0]
