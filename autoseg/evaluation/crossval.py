"""Cross-validation results of a configuration, and ensembles of configurations.

Each fold's final validation exports its cases at native geometry (``fold_<k>/validation/``).
Together the folds' validation cases cover the dataset once, so merged they are one
out-of-fold prediction per training case: ``<config>/crossval/`` (masks copied from the folds),
scored against the raw labels into ``<config>/cv_summary.json``.

An ensemble of configurations averages the folds' saved probabilities (``<case>.npz``) case by
case, and is scored the same way (``<plans>/ensembles/<a>+<b>/cv_summary.json``).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from autoseg.contracts.labels import LabelManager
from autoseg.io.images import read_geometry, write_image
from autoseg.io.probabilities import load_probabilities, save_probabilities
from autoseg.postprocessing.ensemble import average_probabilities, segmentation_from
from autoseg.utils.files import atomic_path, read_artifact

__all__ = ["cv_summary", "ensemble_cases", "fold_validations", "merge_validation"]


def fold_validations(config_folder: Path, num_folds: int) -> dict[str, Path]:
    """Fold name -> its ``validation`` folder, for folds 0..num_folds-1 that finished validating.

    Raises:
        FileNotFoundError: folds without a validation summary (all named, with the command to run).
    """
    found, missing = {}, []
    for k in range(num_folds):
        folder = config_folder / f"fold_{k}" / "validation"
        if (folder / "summary.json").is_file():
            found[str(k)] = folder
        else:
            missing.append(str(k))
    if missing:
        raise FileNotFoundError(
            f"{config_folder}: fold(s) {', '.join(missing)} have no validation results "
            f"(train them: autoseg train DATASET {config_folder.name} FOLD, or rerun their validation "
            "with --val-only)"
        )
    return found


def _case_files(validations: dict[str, Path], ending: str) -> dict[str, Path]:
    """Case -> its mask file over all folds; a case validated by two folds is an error."""
    cases: dict[str, Path] = {}
    for folder in validations.values():
        summary = read_artifact(folder / "summary.json", "validation_summary", 2)
        for entry in summary["cases"]:
            name = entry["case"]
            if name in cases:
                raise ValueError(
                    f"case {name} is in the validation of two folds ({cases[name].parent}, {folder})"
                )
            cases[name] = folder / f"{name}{ending}"
    return cases


def merge_validation(config_folder: Path, num_folds: int, ending: str) -> tuple[Path, dict[str, Path]]:
    """Copy every fold's validation masks into ``<config>/crossval``.

    Returns:
        (the crossval folder, case -> that case's mask file in its fold's validation folder).
    """
    cases = _case_files(fold_validations(config_folder, num_folds), ending)
    target = config_folder / "crossval"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in cases.values():
        with atomic_path(target / path.name, suffix=ending) as tmp:
            shutil.copyfile(path, tmp)
    return target, cases


def cv_summary(
    config_folder: Path,
    num_folds: int,
    ref_folder: Path,
    classes: dict[str, list[int]],
    ending: str,
    num_workers: int | None = None,
    ignore_label: int | None = None,
) -> dict[str, Any]:
    """Evaluate the merged out-of-fold predictions; writes ``<config>/cv_summary.json``.

    Reference voxels of ``ignore_label`` count nowhere.

    Returns:
        The evaluation summary (:func:`autoseg.evaluation.evaluate.evaluate_folders`) plus ``folds``.
    """
    from autoseg.evaluation.evaluate import evaluate_folders

    crossval, cases = merge_validation(config_folder, num_folds, ending)
    summary = evaluate_folders(
        crossval,
        ref_folder,
        classes,
        file_ending=ending,
        cases=sorted(cases),
        num_workers=num_workers,
        ignore_label=ignore_label,
    )
    summary["folds"] = list(range(num_folds))
    summary["configuration"] = config_folder.name
    from autoseg.utils.files import write_artifact

    write_artifact(config_folder / "cv_summary.json", "cv_summary", 1, summary)
    return summary


def ensemble_cases(
    members: Sequence[dict[str, Path]],
    output: Path,
    ending: str,
    keep_probabilities: bool = False,
    labels: LabelManager | None = None,
) -> list[str]:
    """Average the probabilities of several predictions of the same cases; write the argmax masks.

    Args:
        members: per member, case -> its mask file; ``<case>.npz`` probabilities must lie beside it
            (written with ``--save-probabilities`` or by the validation).
        output: where ``<case><ending>`` (and ``<case>.npz`` with ``keep_probabilities``) go.
        ending: the masks' file ending.
        labels: the dataset's labels (regions: masks by ``regions_class_order``); None: the argmax.

    Returns:
        The cases written.

    Raises:
        FileNotFoundError: cases missing from a member, or probabilities missing (all listed).
    """
    names = sorted(members[0])
    problems = [f"{n} is missing from member {i}" for i, m in enumerate(members) for n in names if n not in m]
    problems += [
        f"{m[n].with_name(n + '.npz')} is missing (save probabilities when predicting)"
        for m in members
        for n in names
        if n in m and not m[n].with_name(n + ".npz").is_file()
    ]
    if problems:
        raise FileNotFoundError(f"cannot ensemble {len(names)} case(s):\n  " + "\n  ".join(problems[:20]))
    output.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc="ensemble", unit="case", file=sys.stderr):
        probabilities = average_probabilities(
            [load_probabilities(m[name].with_name(name + ".npz")) for m in members]
        )
        geometry, _ = read_geometry(members[0][name])
        write_image(segmentation_from(probabilities, labels=labels), geometry, output / f"{name}{ending}")
        if keep_probabilities:
            save_probabilities(output / f"{name}.npz", probabilities)
    return names


def folder_cases(folder: Path, ending: str) -> dict[str, Path]:
    """Case -> mask file of a prediction folder (files ``<case><ending>`` with a ``<case>.npz`` or not)."""
    return {p.name[: -len(ending)]: p for p in sorted(folder.glob(f"*{ending}")) if p.is_file()}
