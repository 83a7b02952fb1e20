"""``autoseg predict -i INPUT -o OUTPUT -m MODEL``: segment new scans in their own geometry."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_predict(args: argparse.Namespace) -> int:
    from autoseg.commands.preflight import check_predict
    from autoseg.export.model_card import card_summary, read_model_card
    from autoseg.inference.choice import choose
    from autoseg.inference.inputs import discover_inputs
    from autoseg.inference.model import open_model
    from autoseg.inference.predictor import ConfigurationPredictor
    from autoseg.inference.run import predict_cases
    from autoseg.io.remote import is_remote, resolve_source
    from autoseg.utils.device import pick_device

    device = pick_device(args.device)
    options = _options(args)
    output = Path(args.output)
    check_output_folder(output)
    source = resolve_source(args.model)  # a URL or hf:// model: downloaded (or found in the cache), verified
    if is_remote(args.model):
        print(f"model {args.model}: {source}")
    with open_model(source, args.plans_name) as model:
        card = read_model_card(model.root)
        if card is not None:
            print(card_summary(card))
        choice = choose(model, args.configurations, args.folds, not args.no_postprocessing)
        configs, trained = choice.configurations, choice.trained
        notes: list[str] = []
        cases = discover_inputs(args.input, list(trained[0].plans.channel_names.values()), notes)
        for note in notes:
            print(f"note: {note}")
        check_predict(
            trained,
            choice.folds,
            args.checkpoint,
            args.backend,
            cases,
            Path(args.input),
            args.strict,
            model.configurations(),
        )
        predictors = [
            ConfigurationPredictor(t, list(u), device, options)
            for t, u in zip(trained, choice.folds, strict=True)
        ]
        writers = _writers(args, predictors[0].plans.labels)
        record = {
            "model": args.model if is_remote(args.model) else Path(args.model).name,
            "plans_name": model.plans_name,
            "input": str(args.input),
            "device": str(device),
        }
        temperature = choice.temperature if args.save_probabilities else None
        summary = predict_cases(
            cases,
            predictors,
            output,
            choice.postprocessing,
            args.save_probabilities,
            writers,
            record,
            args.allow_nonfinite,
            uncertainty=args.uncertainty,
            temperature=temperature,
        )
    folds_used = ", ".join(f"{k}: {v} fold(s)" for k, v in summary["folds"].items())
    done = len(summary["cases"]) - summary["failed"]
    if args.uncertainty:
        print(
            f"uncertainty maps: {Path(args.output) / 'uncertainty'}/<case>_entropy and _disagreement; "
            "per-case summaries in predict.json"
        )
    if summary.get("probability_temperature") is not None:
        print(
            "saved probabilities calibrated with find-best's temperature "
            f"{summary['probability_temperature']:.3f}"
        )
    print(
        f"segmented {done} of {len(cases)} case(s) with {' + '.join(configs)} ({folds_used}); "
        f"post-processing {summary['postprocessing'] or 'none'}; output in {args.output}"
    )
    for failed in (c for c in summary["cases"] if "error" in c):
        print(f"failed: {failed['source']}: {failed['error']}")
    return 1 if summary["failed"] else 0


def _options(args: argparse.Namespace) -> Any:
    """The :class:`autoseg.inference.predictor.PredictOptions` of the command line."""
    from autoseg.inference.predictor import PredictOptions

    return PredictOptions(
        checkpoint=args.checkpoint,
        tta=not args.no_tta,
        step_size=args.step_size,
        amp=not args.no_amp,
        tile_batch=args.forward_batch,
        backend=args.backend,
        resample=args.resample,
    )


def check_output_folder(output: Path) -> None:
    """Fail before any work when ``output`` cannot be created or written (naming the folder in the way)."""
    import os

    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output {output}: {existing} is a file, not a folder; choose another -o")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output {output}: {existing} is not writable by this user; choose another -o")


def _writers(args: argparse.Namespace, labels: Any) -> list[Any]:
    """Extra outputs per case; ``labels`` is the model's :class:`autoseg.contracts.LabelManager`."""
    from autoseg.inference.dicom_inputs import dicom_seg_writer, overlay_writer

    names = {value: name for value, name in labels.label_map_names.items() if value != 0}
    writers: list[Any] = []
    if args.dicom_seg:
        writers.append(dicom_seg_writer(names))
    if args.png:
        writers.append(overlay_writer(names))
    return writers


def register(sub: argparse._SubParsersAction) -> None:
    from autoseg.commands.common import add_allow_nonfinite

    p = sub.add_parser(
        "predict",
        help="segment new scans with a trained model; masks in each scan's own geometry",
        description="Segment images (a folder in raw naming, one image file, or a folder of DICOM series).",
    )
    p.add_argument(
        "-i", "--input", required=True, help="folder of <case>_0000<ending> files, a file, or DICOM"
    )
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help="results folder of a dataset, an exported model (.zip/folder), "
        "https://.../model.zip#sha256=HEX, or hf://OWNER/NAME[@REVISION] (downloads cached in "
        "$AUTOSEG_CACHE, default ~/.cache/autoseg)",
    )
    p.add_argument(
        "-c", "--configurations", nargs="+", default=None, help="configuration(s); two are ensembled"
    )
    p.add_argument("-f", "--folds", nargs="+", default=None, help="folds to average (default: all trained)")
    p.add_argument("--plans-name", default=None, help="plans, when the model holds several")
    p.add_argument("--checkpoint", default="final", choices=["final", "best", "latest"])
    p.add_argument("--no-tta", action="store_true", help="no mirroring test-time augmentation (8x faster)")
    p.add_argument("--step-size", type=float, default=0.5, help="sliding-window step, fraction of the patch")
    p.add_argument("--save-probabilities", action="store_true", help="also write <case>.npz probabilities")
    p.add_argument("--no-postprocessing", action="store_true", help="ignore selection.json's post-processing")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--no-amp", action="store_true", help="full precision on the GPU")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "torch-export", "onnxruntime", "openvino", "torchscript"],
        help="auto (the default): the fastest backend installed for the CPU (openvino, then onnxruntime, "
        "else torch), torch on a GPU; the log and predict.json say which ran. torch: the reference; "
        "torch-export/onnxruntime/openvino: an export checked against torch (CPU; made beside each "
        "checkpoint on first use, or by export-model --onnx/--torch-export); torchscript: removed "
        "(torch.jit is deprecated), use torch-export",
    )
    p.add_argument(
        "--resample",
        default="auto",
        choices=["auto", "torch", "scipy"],
        help="probabilities back to the native spacing: torch on the device (auto: on a GPU) or scipy",
    )
    p.add_argument(
        "--forward-batch",
        type=int,
        default=None,
        help="network inputs (tiles, mirrored copies) per forward pass (default: the mirrored copies of "
        "a tile on the CPU; on a GPU sized from the measured memory of one input)",
    )
    p.add_argument("--dicom-seg", action="store_true", help="DICOM input: also write a DICOM-SEG per series")
    p.add_argument("--png", action="store_true", help="also write an overlay PNG per case")
    add_allow_nonfinite(p, "predict.json", "without it such a case fails")
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write uncertainty/<case>_entropy and _disagreement maps (members: every fold and "
        "TTA mirror; the masks are those of a run without it)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse input files that would not be used (wrong name, wrong ending); default: listed",
    )
    p.set_defaults(func=cmd_predict)
