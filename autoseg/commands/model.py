"""``autoseg find-best``, ``autoseg ensemble`` and ``autoseg export-model``: after training."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from autoseg.commands.common import compose_config, dataset_root


def _model_root(cfg: Any, root: Path) -> Path:
    from autoseg.commands.config import Paths

    return Paths.from_config(cfg).require("results") / root.name


def cmd_find_best(args: argparse.Namespace) -> int:
    from autoseg.evaluation.evaluate import classes_from_labels
    from autoseg.evaluation.selection import SelectionInputs, find_best
    from autoseg.inference.model import open_model
    from autoseg.io.dataset import load_raw_dataset

    cfg = compose_config(args)
    root = dataset_root(args.dataset, cfg)
    raw = load_raw_dataset(root)
    with open_model(_model_root(cfg, root), args.plans_name) as model:
        configs = tuple(args.configurations or model.configurations())
        inputs = SelectionInputs(
            model_root=model.root,
            plans_name=model.plans_name,
            configurations=configs,
            num_folds=args.num_folds or int(cfg.num_folds),
            ref_folder=root / "labelsTr",
            classes=classes_from_labels(dict(raw.labels)),
            ending=raw.file_ending,
            ensembles=not args.no_ensembles,
            tolerance_mm=args.tolerance,
            labels=model.configuration(configs[0]).plans.labels if configs else None,
        )
        selection = find_best(inputs, args.num_workers)
    print("cross-validation, mean foreground Dice (per class):")
    for c in sorted(selection["candidates"], key=lambda c: -c["score"]):
        per_class = ", ".join(
            f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in c["per_class"].items()
        )
        print(f"  {' + '.join(c['configurations']):<24} {c['score']:.4f}  ({per_class})")
    print(f"best: {' + '.join(selection['configurations'])}; post-processing: {selection['postprocessing']}")
    for step in selection["postprocessing_report"].get("decisions", []):
        what = step["step"] + (f" of {step['class']}" if "class" in step else "")
        verdict = "kept" if step["kept"] else "rejected"
        worse = f", worse: {', '.join(step['worse'])}" if step["worse"] else ""
        dice, gain = step["foreground_dice"], step["gain"]
        print(f"  {what}: foreground Dice {dice:.4f} (gain {gain:+.4f}{worse}) -> {verdict}")
    for config, fit in selection.get("calibration", {}).items():
        if "temperature" in fit:
            print(
                f"  calibration of {config}: temperature {fit['temperature']:.3f}, expected calibration "
                f"error {fit['ece_before']:.4f} -> {fit['ece_after']:.4f} ({fit['voxels']} voxels)"
            )
        else:
            print(f"  calibration of {config}: skipped ({fit.get('skipped')})")
    print(
        f"selection written to {inputs.model_root / 'selection.json'}; predict with:\n"
        f"  {selection['predict_command']}"
    )
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from autoseg.evaluation.crossval import ensemble_cases, folder_cases

    members = [folder_cases(Path(f), args.file_ending) for f in args.inputs]
    empty = [f for f, m in zip(args.inputs, members, strict=True) if not m]
    if empty:
        raise FileNotFoundError(f"no *{args.file_ending} predictions in {', '.join(empty)}")
    names = ensemble_cases(members, Path(args.output), args.file_ending, args.save_probabilities)
    print(f"ensembled {len(names)} case(s) of {len(members)} predictions into {args.output}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from autoseg.export.archive import export_model
    from autoseg.export.networks import export_fold_networks
    from autoseg.inference.model import open_model
    from autoseg.planning.stages import versions

    if args.output is None and args.container is None:
        raise ValueError("export-model needs -o ARCHIVE.zip, --container FOLDER, or both")
    cfg = compose_config(args)
    root = dataset_root(args.dataset, cfg)
    dataset_json = (
        json.loads((root / "dataset.json").read_text()) if (root / "dataset.json").is_file() else None
    )
    kinds = [k for k, on in (("onnx", args.onnx), ("torchscript", args.torchscript)) if on]
    if args.container is not None:  # the container's backend runs an export made and checked here
        need = {"onnxruntime": "onnx", "openvino": "onnx", "torchscript": "torchscript"}.get(
            args.container_backend
        )
        kinds += [need] if need and need not in kinds else []
    output = Path(args.output) if args.output else Path(args.container) / "model.zip"
    with open_model(_model_root(cfg, root), args.plans_name) as model:
        configurations = args.configurations
        if configurations is None:
            selected = (model.selection or {}).get("configurations")
            configurations = list(selected) if selected else model.configurations()
        records = export_fold_networks(model, configurations, args.folds, args.checkpoint, kinds, root)
        for r in records:
            check = r["check"]
            print(
                f"{r['configuration']} fold {r['fold']}: {r['kind']} {r['file']} checked: max |logit diff| "
                f"{check['max_abs_diff_random']:.1e}, argmax Dice {check['dice_argmax']:.4f} "
                f"({check['dice_case']} case)"
            )
        out = export_model(
            model,
            output,
            configurations,
            args.folds,
            args.checkpoint,
            dataset_json,
            versions(),
            kinds,
            records,
        )
    size = out.stat().st_size / 2**20
    print(f"model exported to {out} ({size:.1f} MiB); use it with: autoseg predict -i IN -o OUT -m {out}")
    if args.container is not None:
        from autoseg.export.container import write_container

        context = write_container(Path(args.container), out, backend=args.container_backend)
        print(f"container build context in {context}: docker build -t my-model {context}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "find-best", help="choose the best configuration / ensemble and post-processing by cross-validation"
    )
    p.add_argument("dataset", help="DatasetXXX_Name, its number, or the path of a raw dataset folder")
    p.add_argument("-c", "--configurations", nargs="+", default=None, help="default: every trained one")
    p.add_argument("--plans-name", default=None)
    p.add_argument("--num-folds", type=int, default=None, help="default: num_folds of the config (5)")
    p.add_argument("--no-ensembles", action="store_true", help="do not try pairs of configurations")
    p.add_argument("--tolerance", type=float, default=1.0, help="surface Dice tolerance in mm")
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("overrides", nargs="*", help="hydra overrides, e.g. paths.results=/data/results")
    p.set_defaults(func=cmd_find_best)

    p = sub.add_parser("ensemble", help="average the probabilities of several prediction folders")
    p.add_argument(
        "-i", "--inputs", nargs="+", required=True, help="folders written with --save-probabilities"
    )
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--file-ending", default=".nii.gz")
    p.add_argument("--save-probabilities", action="store_true")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("export-model", help="write a portable model archive (.zip) for autoseg predict -m")
    p.add_argument("dataset", help="DatasetXXX_Name, its number, or the path of a raw dataset folder")
    p.add_argument("-o", "--output", default=None, help="the archive, e.g. model.zip")
    p.add_argument("-c", "--configurations", nargs="+", default=None, help="default: the selection's")
    p.add_argument("-f", "--folds", nargs="+", default=None, help="default: every trained fold")
    p.add_argument("--checkpoint", default="final", choices=["final", "best", "latest"])
    p.add_argument("--plans-name", default=None)
    p.add_argument("--onnx", action="store_true", help="also export each fold as ONNX (checked, cached)")
    p.add_argument("--torchscript", action="store_true", help="also export each fold as TorchScript")
    p.add_argument(
        "--container",
        default=None,
        help="write a challenge container's build context here (Dockerfile, model.zip, entrypoint)",
    )
    p.add_argument(
        "--container-backend",
        default="torch",
        choices=["torch", "torchscript", "onnxruntime", "openvino"],
        help="the backend the container predicts with",
    )
    p.add_argument("overrides", nargs="*", help="hydra overrides, e.g. paths.results=/data/results")
    p.set_defaults(func=cmd_export)
