"""What every command after ``plan`` checks before it works: one function per command, all problems at once.

Each ``check_*`` gathers the problems of what its command will read (:mod:`autoseg.io.preflight`
does the reading, headers only) and calls :func:`refuse`, which prints the warnings and raises
:class:`autoseg.io.problems.InputError` listing every error, so the command exits non-zero before
it has written anything. Every problem names the user's file and the fix or the command to run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoseg.io import preflight as pf
from autoseg.io.problems import Problem, error, raise_for_input_problems, shown_paths, warning

#: A plan's median z-spacing this many times its in-plane spacing is the pseudo-spacing of 2D images
#: (the fingerprint gives a 2D image 999 x its in-plane spacing).
FLAT_RATIO = 500.0
IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gipl.gz", ".gipl")


def refuse(problems: Sequence[Problem], strict: bool = False) -> None:
    """Raise :class:`autoseg.io.problems.InputError` on any error (any warning with ``strict``);
    print the warnings otherwise."""
    if strict:
        problems = [error(p.path, f"{p.message} (refused by --strict)") for p in problems]
    for p in raise_for_input_problems(list(problems)):
        print(shown_paths(str(p)), file=sys.stderr)


def output_folder(output: Path, flag: str = "-o") -> list[Problem]:
    """An error when ``output`` cannot be created or written (naming the folder in the way)."""
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [error(output, f"{existing} is a file, not a folder; choose another {flag}")]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [error(output, f"{existing} is not writable by this user; choose another {flag}")]
    return []


def image_files(folder: Path, ending: str) -> dict[str, Path]:
    """Case -> file of ``folder``'s files ending in ``ending`` (hidden files skipped)."""
    if not folder.is_dir():
        return {}
    return {
        p.name[: -len(ending)]: p
        for p in sorted(folder.iterdir())
        if p.name.endswith(ending) and not p.name.startswith(".") and p.is_file()
    }


def other_images(folder: Path, ending: str) -> list[Path]:
    """Image files of ``folder`` with another ending than ``ending`` (they will not be read)."""
    if not folder.is_dir():
        return []
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.endswith(ending)
        and any(p.name.endswith(e) for e in IMAGE_ENDINGS)
    ]


def check_evaluate(pred: Path, ref: Path, ending: str, predicted_only: bool) -> list[str]:
    """The cases ``autoseg evaluate PRED REF`` scores, refusing missing folders, case sets that
    differ (with ``predicted_only``: predictions without a reference) and unreadable headers."""
    problems: list[Problem] = []
    files: dict[Path, dict[str, Path]] = {}
    for folder, what in ((pred, "prediction folder"), (ref, "reference folder")):
        problems += pf.folder(folder, what, "give an existing folder")
        files[folder] = image_files(folder, ending)
        why = f"its ending is not {ending!r} (set --file-ending)"
        problems += pf.unused_files(other_images(folder, ending), why)
    have_pred, have_ref = set(files[pred]), set(files[ref])
    if predicted_only:
        have_ref &= have_pred  # only the predicted cases need a reference
    problems += pf.case_sets(
        {str(pred): have_pred, str(ref): have_ref},
        f"files are paired by name minus {ending!r}: predict the missing cases, remove the extra "
        "files, or score only the predicted ones with --predicted-only",
    )
    cases = sorted(have_pred if predicted_only else have_pred | have_ref)
    if not cases and pred.is_dir() and ref.is_dir():
        problems.append(error(pred, f"no {ending} files here or in {ref} (set --file-ending)"))
    for found in files.values():
        problems += pf.image_headers([found[c] for c in cases if c in found], "replace the file", whole=True)
    refuse(problems)
    return cases


def check_ensemble(inputs: Sequence[str], ending: str, output: Path) -> list[dict[str, Path]]:
    """The members (case -> mask file) of ``autoseg ensemble -i ...``, all checked."""
    problems: list[Problem] = []
    members: list[dict[str, Path]] = []
    for folder in map(Path, inputs):
        problems += pf.folder(folder, "prediction folder", "give a folder written by autoseg predict")
        members.append(image_files(folder, ending))
        if folder.is_dir() and not members[-1]:
            problems.append(error(folder, f"no *{ending} predictions (set --file-ending)"))
    problems += pf.case_sets(
        {f: set(m) for f, m in zip(inputs, members, strict=True) if m},
        "predict the missing cases into that folder (with --save-probabilities), or remove the extra ones",
    )
    fix = "predict the case again with --save-probabilities"
    for member in members:
        for case, mask in sorted(member.items()):
            problems += pf.zip_archive(mask.with_name(case + ".npz"), fix, "probabilities file")
        problems += pf.image_headers(member.values(), "predict the case again", whole=True)
    if Path(output).resolve() in {Path(f).resolve() for f in inputs}:
        problems.append(error(output, "the output is one of the inputs; choose another -o"))
    problems += output_folder(Path(output))
    refuse(problems)
    return members


def check_find_best(inputs: Any, dataset: str) -> None:
    """Refuse before find-best writes anything: folds without validation, damaged validation
    summaries, masks or probabilities (each the fold's own file), and cross-validation case sets
    that differ from labelsTr's or between configurations."""
    problems: list[Problem] = []
    base = inputs.model_root / inputs.plans_name
    refs = image_files(inputs.ref_folder, inputs.ending)
    sets: dict[str, set[str]] = {str(inputs.ref_folder): set(refs)}
    pairs = inputs.ensembles and len(inputs.configurations) > 1
    for config in inputs.configurations:
        cases: dict[str, Path] = {}
        for k in range(inputs.num_folds):
            folder = base / config / f"fold_{k}" / "validation"
            command = f"autoseg train {dataset} {config} {k}"
            if not (folder / "summary.json").is_file():
                problems.append(
                    error(
                        folder,
                        f"fold {k} has no validation results; run: {command} (--val-only when trained)",
                    )
                )
                continue
            summary, found = pf.json_file(
                folder / "summary.json", f"validate again: {command} --val-only", "validation_summary"
            )
            problems += found
            for entry in (summary or {}).get("cases", []):
                name = str(entry.get("case")) if isinstance(entry, dict) else str(entry)
                if name in cases:
                    problems.append(
                        error(
                            folder,
                            f"case {name} is also validated by {cases[name].parent}; "
                            "fix splits.json and retrain",
                        )
                    )
                mask = cases[name] = folder / f"{name}{inputs.ending}"
                problems += pf.image_headers([mask], f"validate again: {command} --val-only", whole=True)
                npz = mask.with_name(name + ".npz")
                if pairs or npz.exists():
                    problems += pf.zip_archive(
                        npz, f"validate again: {command} --val-only", "probabilities file"
                    )
        sets[f"{config} cross-validation ({base / config}/fold_*/validation)"] = set(cases)
    problems += pf.case_sets(
        sets, "every training case needs one fold's validation: train the missing folds, or fix labelsTr"
    )
    problems += pf.image_headers(refs.values(), "restore the reference label map", whole=True)
    refuse(problems)


def check_predict(
    trained: Sequence[Any],
    folds: Sequence[Sequence[str]],
    checkpoint: str,
    backend: str,
    cases: Sequence[Any],
    source: Path,
    strict: bool,
    available: Sequence[str] = (),
) -> None:
    """Refuse before any work: damaged checkpoints, missing backend packages, unreadable inputs,
    inputs of the wrong dimensionality; input files that are not used are listed (refused with
    ``strict``)."""
    problems: list[Problem] = []
    fix = "train the fold again, or choose another --checkpoint / -f"
    for conf, use in zip(trained, folds, strict=True):
        for fold in use:
            problems += pf.zip_archive(
                conf.folder / f"fold_{fold}" / f"checkpoint_{checkpoint}.pt", fix, "checkpoint"
            )
    for module in {"onnxruntime": ["onnxruntime"], "openvino": ["openvino"]}.get(backend, []):
        problems += pf.optional_package(module, f"--backend {backend}")
    problems += pf.image_headers(
        [f for case in cases for f in case.files], "replace the file, or leave it out"
    )
    problems += _dimensions(trained, cases, available)
    refuse(problems)
    named = [Path(f) for case in cases for f in case.files]
    if source.is_dir() and named and all(p.name.endswith(IMAGE_ENDINGS) for p in named):
        used = set(named)
        unused = [
            p
            for p in sorted(source.iterdir())
            if p.is_file() and not p.name.startswith(".") and p not in used
        ]
        how = "inputs are named <case>_<channel:04d><ending> (" + ", ".join(IMAGE_ENDINGS[:4]) + ", ...)"
        refuse(pf.unused_files(unused, how), strict)


def _dimensions(trained: Sequence[Any], cases: Sequence[Any], available: Sequence[str]) -> list[Problem]:
    """A 2D image given to a 3D configuration, or a 3D scan to a model trained on 2D images.

    Unreadable headers are :func:`autoseg.io.preflight.image_headers`' to report; DICOM series
    (no image files) are checked by the series reader (at least 2 slices).
    """
    from autoseg.io.images import ImageReadError, read_geometry

    problems = []
    for case in cases:
        if not case.files or not str(case.files[0]).endswith(IMAGE_ENDINGS):
            continue
        try:
            geom, _ = read_geometry(case.files[0])
        except ImageReadError:
            continue
        flat = geom.ndim == 2 or geom.shape[0] == 1
        for conf in trained:
            three_d = len(conf.plans.configuration(conf.name).patch_size) == 3
            spacing = conf.plans.original_median_spacing
            if flat and three_d:
                what = (
                    f"a 2D image {list(geom.shape)}, but {conf.name} is a 3D configuration (it would stretch "
                    "the image to hundreds of slices); "
                    + (
                        "predict it with -c 2d, or give a 3D scan"
                        if "2d" in available
                        else "give a 3D scan, or train the 2d configuration (autoseg plan DATASET -c 2d, "
                        "autoseg train DATASET 2d FOLD) and predict with -c 2d"
                    )
                )
                problems.append(error(case.files[0], what))
            elif not flat and len(spacing) == 3 and spacing[0] >= FLAT_RATIO * max(spacing[1:]):
                what = (
                    f"a 3D scan {list(geom.shape)}, but {conf.name} was trained on 2D images; give 2D "
                    "images (one slice each), or use a model trained on 3D scans"
                )
                problems.append(error(case.files[0], what))
    return problems


def check_export(
    model: Any,
    configurations: Sequence[str],
    folds: Sequence[str] | None,
    checkpoint: str,
    kinds: Sequence[str],
    dataset_json: Path,
    dataset: str = "DATASET",
) -> dict[str, Any] | None:
    """Refuse before exporting: a broken dataset.json, untrained configurations or folds, damaged
    checkpoints, missing packages for ``kinds``. Returns the dataset.json (None when absent).
    ``model`` None: the dataset.json only."""
    problems: list[Problem] = []
    data = None
    if dataset_json.is_file():
        data, found = pf.json_file(
            dataset_json, "fix the raw dataset's dataset.json (check it: autoseg validate DATASET)"
        )
        problems += found
    for name in configurations if model is not None else ():
        folder = model.root / model.plans_name / name
        try:
            conf = model.configuration(name)
        except (FileNotFoundError, ValueError) as err:
            problems.append(error(folder, f"{err}; train it: autoseg train {dataset} {name} FOLD"))
            continue
        for fold in folds or conf.folds:
            fix = f"train fold {fold}: autoseg train {dataset} {name} {fold}, or choose --checkpoint / -f"
            problems += pf.zip_archive(
                folder / f"fold_{fold}" / f"checkpoint_{checkpoint}.pt", fix, "checkpoint"
            )
    for module in ("onnx", "onnxruntime") if "onnx" in kinds else ():
        problems += pf.optional_package(
            module, "an ONNX export (--onnx, or a container for onnxruntime/openvino)"
        )
    refuse(problems)
    return data


def check_report(preprocessed: Path, model_root: Path, dataset: str = "DATASET") -> None:
    """Refuse a report over damaged JSON artifacts (each named, with the command that rewrites it)."""
    problems: list[Problem] = []
    rewrite = {
        "selection.json": "autoseg find-best DATASET",
        "cv_summary.json": "autoseg find-best DATASET",
        "history.json": "autoseg train DATASET CONFIG FOLD --resume",
        "run.json": "autoseg train DATASET CONFIG FOLD --resume",
        "summary.json": "autoseg train DATASET CONFIG FOLD --val-only",
        "evaluation.json": "autoseg train DATASET CONFIG FOLD --val-only",
        "plans.json": "autoseg plan DATASET",
        "fingerprint.json": "autoseg plan DATASET",
    }
    files = (
        [preprocessed / "fingerprint.json", *preprocessed.glob("*/plans.json")]
        if preprocessed.is_dir()
        else []
    )
    if model_root.is_dir():
        files += [p for p in model_root.rglob("*.json") if p.name in rewrite and "crossval" not in p.parts]
    for path in files:
        fix = f"rewrite it: {rewrite[path.name].replace('DATASET', dataset)}"
        problems += pf.json_file(path, fix, container=list if path.name == "history.json" else dict)[1]
    refuse(problems)


def check_train(data_folder: Path, cases: Sequence[str], dataset: str, configuration: str) -> None:
    """Every preprocessed case of the fold exists and is readable (headers), before the first step."""
    from autoseg.preprocessing.storage import case_damage

    command = f"autoseg preprocess {dataset} -c {configuration}"
    problems = []
    for case in sorted(set(cases)):
        damage = case_damage(data_folder, case)
        if damage is not None:
            problems.append(error(damage[0], f"preprocessed case {case}: {damage[1]}; repair it: {command}"))
    refuse(problems)


__all__ = [
    "check_ensemble",
    "check_evaluate",
    "check_export",
    "check_find_best",
    "check_predict",
    "check_report",
    "check_train",
    "output_folder",
    "refuse",
    "warning",
]
