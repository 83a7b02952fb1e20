"""Structural checks of a raw dataset: dataset.json, folders, file naming, complete cases.

These checks open no image; :mod:`autoseg.io.validation` adds the per-case header and content
checks and is the public entry point (it re-exports :func:`check_structure`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoseg.contracts.labels import LabelError, LabelManager
from autoseg.io.dataset import Case, RawDataset, split_channel, strip_ending
from autoseg.io.images import SUPPORTED_ENDINGS
from autoseg.io.problems import Problem, error, relative, warning
from autoseg.utils.lookup import closest

DESCRIPTION = "dataset.json"
REQUIRED_KEYS = '"channel_names", "labels", "numTraining" and "file_ending"'
LISTING_EXAMPLE = (
    '{"case_id": {"images": ["imagesTr/case_id_0000.nii.gz"], "label": "labelsTr/case_id.nii.gz"}}'
)


def check_structure(dataset: RawDataset) -> list[Problem]:
    """Check dataset.json, the folders, the file naming and that every case is complete.

    Args:
        dataset: as returned by :func:`autoseg.io.dataset.load_raw_dataset`.

    Returns:
        Every problem found (empty for a well-formed dataset); no image is opened.
    """
    problems = check_layout(dataset)
    for case in dataset.cases:
        problems += check_case_files(case, dataset)
    return problems


def check_layout(dataset: RawDataset) -> list[Problem]:
    """The dataset-level part of :func:`check_structure`: dataset.json, folders, naming, case count."""
    problems = _check_description(dataset.root)
    if dataset.explicit_files:
        problems += [error(DESCRIPTION, m) for m in _listing_errors(dataset.description.get("dataset"))]
    else:
        problems += _check_folders(dataset)
    declared, found = dataset.description.get("numTraining"), len(dataset.cases)
    if _is_int(declared) and declared != found and found:
        msg = f'"numTraining" is {declared} but {found} cases were found'
        problems.append(warning(DESCRIPTION, f"{msg}; set it to {found}"))
    if not found and dataset.file_ending and not any(p.severity == "error" for p in problems):
        msg = "no training cases found; put images and labels in imagesTr/ and labelsTr/"
        problems.append(error(".", msg))
    return problems


def _check_description(root: Path) -> list[Problem]:
    path = root / DESCRIPTION
    if not path.is_file():
        return [error(DESCRIPTION, f"not found in {root}; create it with {REQUIRED_KEYS}")]
    try:
        desc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return [
            error(DESCRIPTION, f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); fix it")
        ]
    except (OSError, UnicodeDecodeError) as err:
        return [error(DESCRIPTION, f"cannot be read ({err}); make it a readable UTF-8 JSON file")]
    if not isinstance(desc, dict):
        return [
            error(DESCRIPTION, f"must be a JSON object with {REQUIRED_KEYS}, not a {type(desc).__name__}")
        ]
    problems = [
        error(DESCRIPTION, m) for m in _channel_errors(desc) + _label_errors(desc) + _ending_errors(desc)
    ]
    if "channel_names" not in desc and isinstance(desc.get("modality"), dict):
        problems.append(
            warning(DESCRIPTION, 'uses the nnU-Net v1 key "modality"; rename it to "channel_names"')
        )
    if not _is_int(desc.get("numTraining")):
        found = f"found {desc['numTraining']!r}" if "numTraining" in desc else "missing"
        problems.append(
            warning(DESCRIPTION, f'"numTraining" should be the number of training cases ({found})')
        )
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _channel_errors(desc: dict[str, Any]) -> list[str]:
    if "channel_names" not in desc:
        return (
            []
            if isinstance(desc.get("modality"), dict)
            else ['missing "channel_names"; add e.g. {"0": "CT"}']
        )
    names = desc["channel_names"]
    if not isinstance(names, dict) or not names:
        return [f'"channel_names" must be a non-empty object like {{"0": "CT"}}, not {names!r}']
    if not all(str(k).isdigit() for k in names):
        return [f'"channel_names" keys must be channel indices "0", "1", ...; found {list(names)}']
    indices = sorted(int(k) for k in names)
    if indices != list(range(len(indices))):
        return [f'"channel_names" indices must be 0, 1, ..., {len(indices) - 1}; found {indices}']
    return []


def _label_errors(desc: dict[str, Any]) -> list[str]:
    """The rules of nnU-Net v2: background 0, integer values (lists for regions), consecutive, ignore last."""
    labels = desc.get("labels")
    if "labels" not in desc:
        return ['missing "labels"; add e.g. "labels": {"background": 0, "tumor": 1}']
    if not isinstance(labels, dict) or not labels:
        return [f'"labels" must be a non-empty object of name -> value, not {labels!r}']
    if all(str(k).isdigit() for k in labels) and all(isinstance(v, str) for v in labels.values()):
        msg = '"labels" maps values to names (nnU-Net v1 / MSD style)'
        return [msg + '; invert it to name -> value, e.g. {"background": 0, "tumor": 1}']
    errors: list[str] = []
    values: set[int] = set()
    plain: set[int] = set()
    for name, v in labels.items():
        if _is_int(v):
            values.add(v)
            plain.add(v)
        elif isinstance(v, list) and v and all(_is_int(x) for x in v):
            values.update(v)
        else:
            msg = f'label "{name}" has value {v!r}; label values must be integers'
            errors.append(msg + f' (or non-empty lists of integers for a region), e.g. "{name}": 1')
    if 0 not in plain:
        errors.append('"labels" has no background: add "background": 0')
    errors += _manager_errors(labels, desc.get("regions_class_order")) if not errors else []
    missing = sorted(set(range(max(values, default=0) + 1)) - values)
    if any(v < 0 for v in values):
        errors.append(
            f"negative label values {sorted(v for v in values if v < 0)}; use 0 (background), 1, 2, ..."
        )
    elif missing and not errors:
        msg = f"label values must be consecutive (0, 1, 2, ...); {missing} missing"
        errors.append(msg + ': renumber "labels" and the label files')
    return errors


def _manager_errors(labels: dict[str, Any], order: Any) -> list[str]:
    """The label manager's rules (the ignore label highest, with the renumbering to do; one
    ``regions_class_order`` value per region), the same check the plans get."""
    if order is not None and not (isinstance(order, list) and all(_is_int(v) for v in order)):
        return [f'"regions_class_order" must be a list of integers, got {order!r}']
    try:
        LabelManager.from_labels(labels, order)
    except LabelError as err:
        return [line.strip() for line in str(err).splitlines()[1:]]
    return []


def _ending_errors(desc: dict[str, Any]) -> list[str]:
    if "file_ending" not in desc:
        return ['missing "file_ending"; add e.g. "file_ending": ".nii.gz"']
    ending = desc["file_ending"]
    if ending in SUPPORTED_ENDINGS:
        return []
    close = closest(str(ending), SUPPORTED_ENDINGS)
    hint = f'; did you mean "{close}"?' if close else ""
    return [f'"file_ending" {ending!r} is not supported (supported: {", ".join(SUPPORTED_ENDINGS)}){hint}']


def _listing_errors(listing: Any) -> list[str]:
    """Check the form of dataset.json's ``"dataset"`` key (the files are checked per case)."""
    if not isinstance(listing, dict) or not listing:
        return [f'"dataset" must be a non-empty object like {LISTING_EXAMPLE}']
    errors = []
    for name, entry in listing.items():
        if not isinstance(entry, dict):
            errors.append(f'"dataset" entry "{name}" must be an object like {LISTING_EXAMPLE}')
            continue
        images = entry.get("images")
        if not isinstance(images, list) or not all(isinstance(f, str) and f for f in images):
            errors.append(f'"dataset" entry "{name}": "images" must be a list of file paths')
        if "label" in entry and not (isinstance(entry["label"], str) and entry["label"]):
            errors.append(f'"dataset" entry "{name}": "label" must be a file path')
    return errors


def _check_folders(dataset: RawDataset) -> list[Problem]:
    problems = []
    for folder, kind in (("imagesTr", "images"), ("labelsTr", "labels")):
        if not (dataset.root / folder).is_dir():
            problems.append(
                error(folder, f"folder not found; put the training {kind} in {dataset.root / folder}")
            )
    return problems if problems or not dataset.file_ending else _check_naming(dataset)


def _check_naming(dataset: RawDataset) -> list[Problem]:
    """Warn about entries of imagesTr/labelsTr that discovery ignores (hidden files are skipped)."""
    ending, problems = dataset.file_ending, []
    for folder in ("imagesTr", "labelsTr"):
        for p in sorted((dataset.root / folder).iterdir()):
            rel, stem = f"{folder}/{p.name}", strip_ending(p.name, ending)
            if p.name.startswith("."):
                continue
            if p.is_dir():
                problems.append(warning(rel, f"unexpected folder in {folder}, ignored; move it elsewhere"))
            elif stem is None:
                msg = f'does not end with "{ending}" (dataset.json "file_ending") and is ignored'
                problems.append(warning(rel, msg + "; convert or remove it"))
            elif folder == "imagesTr" and split_channel(stem) is None:
                msg = f"is ignored: images are named {{CASE}}_{{XXXX}}{ending} (4-digit channel index)"
                problems.append(warning(rel, f"{msg}; rename it, e.g. to {stem}_0000{ending}"))
    return problems


def escapes(path: Path, root: Path) -> bool:
    """True when ``path``, with ``..`` and symbolic links resolved, lies outside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return True
    return False


def missing_file(path: Path, root: Path) -> Problem:
    """The problem for a file that a case names but that does not exist."""
    return error(relative(path, root), "file not found (or a broken symbolic link); add it or fix the name")


def _check_locations(case: Case, dataset: RawDataset) -> list[Problem]:
    root, problems = dataset.root, []
    files = [(f"images[{c}]", p) for c, p in case.channel_files.items()]
    for role, path in files + ([("label", case.label)] if case.label is not None else []):
        if escapes(path, root) and dataset.explicit_files:
            msg = f'"dataset" entry "{case.name}": {role} points outside the dataset folder'
            problems.append(
                error(DESCRIPTION, msg + "; move the file into it and give its path relative to it")
            )
        elif escapes(path, root):
            msg = "is a symbolic link to a file outside the dataset folder"
            problems.append(error(relative(path, root), msg + "; copy the file into the folder instead"))
        elif not path.is_file():
            problems.append(missing_file(path, root))
    return problems


def check_case_files(case: Case, dataset: RawDataset) -> list[Problem]:
    """Check that a case has a label and every declared channel, each a file inside the dataset folder.

    Args:
        case: the case to check.
        dataset: the dataset it belongs to.

    Returns:
        The problems found; no image is opened.
    """
    root, ending, listed = dataset.root, dataset.file_ending, dataset.explicit_files
    problems = _check_locations(case, dataset)
    if not case.channel_files:
        label = relative(case.label, root) if case.label else DESCRIPTION
        msg = f'label without images: case "{case.name}" has no image file'
        fix = f"add imagesTr/{case.name}_0000{ending} (one file per channel) or remove the label"
        return [*problems, error(label, f"{msg}; {fix}")]
    if case.label is None:
        fix = 'add a "label" to its "dataset" entry' if listed else f"add labelsTr/{case.name}{ending}"
        msg = f'image without label: case "{case.name}" has no label file; {fix} or remove its images'
        problems.append(error(relative(case.images[0], root), msg))
    if not dataset.channel_names:
        return problems
    declared = ", ".join(f"{c} ({n})" for c, n in dataset.channel_names.items())
    for c, path in case.channel_files.items():
        if c not in dataset.channel_names:
            msg = f'channel index {c} is not declared in dataset.json "channel_names" (declared: {declared})'
            problems.append(error(relative(path, root), msg + "; declare it or remove the file"))
    for c, name in dataset.channel_names.items():
        if c not in case.channel_files:
            where = DESCRIPTION if listed else f"imagesTr/{case.name}_{c:04d}{ending}"
            msg = f'missing channel {c} ({name}) of case "{case.name}"'
            problems.append(error(where, f"{msg}; every case needs every channel ({declared})"))
    return problems
