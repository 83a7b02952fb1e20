"""``autoseg evaluate PRED REF`` (metrics per case and class) and ``autoseg postprocess IN OUT``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _dataset_json(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any]]:
    """The dataset.json to take classes from: --dataset-json, else REF/../dataset.json if present."""
    if args.dataset_json is not None:
        path = Path(args.dataset_json)
        if not path.is_file():
            raise FileNotFoundError(f"--dataset-json {path}: no such file")
    else:
        path = Path(args.reference).resolve().parent / "dataset.json"
        if not path.is_file():
            return None, {}
    problem = 'has no "labels" object'
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        data, problem = None, f"not valid JSON ({err})"
    if isinstance(data, dict) and isinstance(data.get("labels"), dict):
        return path, data
    if args.labels and args.dataset_json is None:
        return None, {}  # -l gives the classes; a broken dataset.json beside REF does not matter
    raise ValueError(f"{path}: {problem}; fix it, or give the labels with -l 1 2 ...")


def _ignore_label(labels: dict[str, Any]) -> int | None:
    """dataset.json's ignore value (the label manager's answer; types checked, not the order)."""
    from autoseg.contracts.labels import LabelManager

    return LabelManager.from_labels(labels, strict=False).ignore_label


def resolve_classes(args: argparse.Namespace) -> tuple[dict[str, list[int]], int | None, str]:
    """Classes, ignore label and file ending from -l, the dataset.json, or the reference files."""
    from autoseg.evaluation.evaluate import classes_from_labels, labels_in_files

    path, data = _dataset_json(args)
    labels = data.get("labels", {})
    ignore = args.ignore_label if args.ignore_label is not None else _ignore_label(labels)
    ending = args.file_ending or str(data.get("file_ending") or ".nii.gz")
    if args.labels:
        return {str(k): [int(k)] for k in args.labels}, ignore, ending
    if path is not None:
        classes = classes_from_labels(labels)
        if not classes:
            raise ValueError(f'{path}: "labels" has no foreground label; give the labels with -l 1 2 ...')
        return classes, ignore, ending
    files = sorted(p for p in Path(args.reference).glob(f"*{ending}") if not p.name.startswith("."))
    found = [v for v in labels_in_files(files, args.num_workers) if v not in (0, ignore)]
    if not found:
        raise ValueError(
            f"{args.reference}: no foreground label in the {ending} files; give the labels with -l 1 2 ..."
        )
    return {str(k): [k] for k in found}, ignore, ending


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_summary(summary: dict[str, Any]) -> str:
    """A short table: one line per class (mean Dice, HD95, NSD), then the foreground mean."""
    tol = summary["tolerance_mm"]
    width = max(len("foreground mean"), *(len(n) for n in summary["classes"]))
    lines = [f"{'class':<{width}}  {'Dice':>7}  {'HD95 mm':>8}  {f'NSD@{tol:g}mm':>10}"]
    rows = [*summary["mean"].items(), ("foreground mean", summary["foreground_mean"])]
    for name, m in rows:
        lines.append(f"{name:<{width}}  {_fmt(m['dice']):>7}  {_fmt(m['hd95'], 2):>8}  {_fmt(m['nsd']):>10}")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from autoseg.io.images import ImageReadError

    try:
        return _evaluate(args)
    except ImageReadError as err:  # a truncated or unreadable file: reported like the other errors
        raise ValueError(str(err)) from err


def _evaluate(args: argparse.Namespace) -> int:
    from autoseg.evaluation.evaluate import evaluate_folders

    classes, ignore, ending = resolve_classes(args)
    cases = None
    if args.predicted_only:
        cases = sorted(
            p.name[: -len(ending)]
            for p in Path(args.prediction).glob(f"*{ending}")
            if not p.name.startswith(".")
        )
    output = Path(args.output) if args.output else Path(args.prediction) / "summary.json"
    summary = evaluate_folders(
        args.prediction,
        args.reference,
        classes,
        ending,
        args.tolerance,
        ignore,
        args.num_workers,
        cases,
        output,
    )
    print(f"{len(summary['cases'])} cases")
    print(format_summary(summary))
    print(f"summary written to {output}")
    return 0


def cmd_postprocess(args: argparse.Namespace) -> int:
    from autoseg.io.images import ImageReadError
    from autoseg.postprocessing.components import PostprocessingSpec, load_spec, postprocess_folder

    if args.spec is not None and (args.foreground_lcc or args.class_lcc):
        raise ValueError("--spec FILE cannot be combined with --foreground-lcc or --class-lcc; give one")
    if args.spec is None and not args.foreground_lcc and not args.class_lcc:
        raise ValueError("nothing to do: give --spec FILE, --foreground-lcc or --class-lcc LABEL ...")
    if args.spec is not None:
        spec = load_spec(args.spec)
    else:
        spec = PostprocessingSpec(foreground_lcc=args.foreground_lcc, class_lcc=tuple(args.class_lcc or ()))
    source = Path(args.input)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: not a folder")
    files = sorted(
        p for p in source.glob(f"*{args.file_ending}") if p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise FileNotFoundError(f"{source}: no {args.file_ending} files (set --file-ending)")
    try:
        postprocess_folder(files, args.output, spec, args.num_workers)
    except ImageReadError as err:
        raise ValueError(str(err)) from err
    print(f"post-processed {len(files)} file(s) with {spec.to_dict()} into {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predicted label maps against references (Dice, IoU, HD95, NSD)",
        description="Score every PRED/{case}{ending} against REF/{case}{ending}; writes summary.json.",
    )
    p.add_argument("prediction", help="folder of predicted label maps")
    p.add_argument("reference", help="folder of reference label maps (e.g. labelsTr)")
    p.add_argument(
        "-l",
        "--labels",
        type=int,
        nargs="+",
        default=None,
        help="labels to score, each its own class (default: from the dataset.json, else every label found)",
    )
    p.add_argument("-o", "--output", default=None, help="summary file (default: PRED/summary.json)")
    p.add_argument("--tolerance", type=float, default=1.0, help="NSD tolerance in mm (default 1.0)")
    p.add_argument(
        "--dataset-json", default=None, help="dataset.json with the labels (default: REF/../dataset.json)"
    )
    p.add_argument("--file-ending", default=None, help="default: the dataset.json's, else .nii.gz")
    p.add_argument(
        "--ignore-label", type=int, default=None, help="default: the dataset.json's 'ignore' label"
    )
    p.add_argument(
        "--predicted-only",
        action="store_true",
        help="score only the cases in PRED (e.g. one fold's validation against all of labelsTr)",
    )
    p.add_argument("--num-workers", type=int, default=None, help="worker processes (default: all cores)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "postprocess",
        help="keep the largest connected component(s) of every label map in a folder",
        description="Apply connected-component post-processing to IN/*{ending}; write OUT, same geometry.",
    )
    p.add_argument("input", help="folder of label maps")
    p.add_argument("output", help="folder to write the post-processed label maps to")
    p.add_argument(
        "--spec", default=None, help="postprocessing.json, or a selection.json with a 'postprocessing' key"
    )
    p.add_argument(
        "--foreground-lcc", action="store_true", help="keep the largest component of the foreground"
    )
    p.add_argument(
        "--class-lcc", type=int, nargs="+", default=None, help="labels to keep the largest component of"
    )
    p.add_argument("--file-ending", default=".nii.gz")
    p.add_argument("--num-workers", type=int, default=None, help="worker processes (default: all cores)")
    p.set_defaults(func=cmd_postprocess)
