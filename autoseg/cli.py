"""The ``autoseg`` command: argparse subcommands, each composing the hydra config and calling one stage.

Positional ``key=value`` arguments are hydra overrides (``paths.raw=/data``,
``planner.max_dataset_covered=0.1``); ``CONFIG.FIELD=VALUE`` arguments (``3d_fullres.batch_size=4``)
override a plan field and are recorded in plans.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PLAN_OVERRIDE_PREFIXES = ("2d.", "3d_fullres.", "3d_lowres.")
log = logging.getLogger("autoseg")


def _split_overrides(items: Sequence[str]) -> tuple[list[str], list[str]]:
    hydra: list[str] = []
    plan: list[str] = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"autoseg: error: unexpected argument {item!r} (overrides are key=value)")
        (plan if item.startswith(PLAN_OVERRIDE_PREFIXES) else hydra).append(item)
    return hydra, plan


def _config(args: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    from autoseg.config import compose

    return compose([*extra, *args.hydra_overrides])


def _dataset_root(args: argparse.Namespace, cfg: Any) -> Path:
    from autoseg.config import Paths
    from autoseg.io.dataset import resolve_dataset

    return resolve_dataset(args.dataset, Paths.from_config(cfg).raw)


def _folders(cfg: Any, dataset_root: Path) -> Any:
    from autoseg.config import Paths
    from autoseg.io.dataset import load_raw_dataset
    from autoseg.stages import DatasetFolders

    return DatasetFolders.for_dataset(
        Paths.from_config(cfg).require("preprocessed"), load_raw_dataset(dataset_root)
    )


def _planner(cfg: Any, args: argparse.Namespace) -> Any:
    from omegaconf import OmegaConf

    from autoseg.planning.presets import PlannerConfig

    data: dict[str, Any] = dict(OmegaConf.to_container(cfg.planner, resolve=True))  # type: ignore[arg-type]
    if getattr(args, "gpu_memory", None) is not None:
        data["gpu_memory_gb"] = float(args.gpu_memory)
    if getattr(args, "plans_name", None):
        data["name"] = args.plans_name
    return PlannerConfig.from_mapping(data)


def cmd_synthetic(args: argparse.Namespace) -> int:
    from autoseg.synthetic import SyntheticSpec, generate_dataset

    spec = SyntheticSpec(
        num_cases=args.num_cases,
        channels=args.channels,
        classes=args.classes,
        shape=tuple(args.shape),
        spacing=tuple(args.spacing),
        modality=args.modality,
        seed=args.seed,
    )
    out = generate_dataset(args.out_folder, spec, num_workers=args.num_workers)
    print(f"synthetic dataset with {spec.num_cases} cases written to {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from autoseg.io.dataset import load_raw_dataset
    from autoseg.io.validation import format_problems, validate_dataset

    cfg = _config(args)
    root = _dataset_root(args, cfg)
    problems = validate_dataset(load_raw_dataset(root), num_workers=args.num_workers)
    print(format_problems(problems) if problems else f"{root}: no problems found")
    return 1 if any(p.severity == "error" for p in problems) else 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from autoseg.stages import run_fingerprint

    cfg = _config(args)
    root = _dataset_root(args, cfg)
    fp = run_fingerprint(root, _folders(cfg, root), args.num_workers)
    print(
        f"fingerprint: {fp['num_cases']} cases, median spacing {fp['median_spacing']}, "
        f"median shape after crop {fp['median_shape_after_crop']}"
    )
    return 0


def format_plans(plans: dict[str, Any]) -> str:
    """A compact, human-readable summary of plans.json."""
    lines = [
        f"plans {plans['plans_name']!r} for {plans['dataset_name']}: "
        f"axis order {plans['transpose_forward']}, "
        f"median spacing {[round(s, 4) for s in plans['original_median_spacing_after_transp']]}, "
        f"median shape {plans['original_median_shape_after_transp']}"
    ]
    for name, c in plans["configurations"].items():
        if "patch_size" not in c:
            lines.append(f"  {name}: {c}")
            continue
        arch = c["architecture"]
        lines.append(
            f"  {name}: spacing {[round(s, 4) for s in c['spacing']]}, "
            f"median {c['median_image_size_in_voxels']}, "
            f"patch {c['patch_size']}, batch {c['batch_size']}, {arch['n_stages']} stages "
            f"({arch['network']}, features {arch['features_per_stage']}), strides {arch['strides']}, "
            f"kernels {arch['kernel_sizes']}, normalization {c['normalization_schemes']} "
            f"mask {c['use_mask_for_norm']}, batch_dice {c['batch_dice']}"
        )
    if plans.get("overrides"):
        lines.append(f"  overrides: {plans['overrides']}")
    return "\n".join(lines)


def _fingerprint_reusable(path: Path, nonfinite: float | None) -> bool:
    """Whether fingerprint.json exists and was made with the same ``--allow-nonfinite`` value."""
    import json

    if not path.is_file():
        return False
    made_with = (json.loads(path.read_text()).get("nonfinite_intensities") or {}).get("replaced_with")
    if made_with != nonfinite:
        log.info("fingerprint.json was made with --allow-nonfinite %s: computing it again", made_with)
        return False
    return True


def cmd_plan(args: argparse.Namespace) -> int:
    from autoseg.config import to_plain
    from autoseg.stages import planned_configurations, run_fingerprint, run_plan, run_preprocess

    cfg = _config(args, [f"planner={args.preset}"])
    root = _dataset_root(args, cfg)
    folders = _folders(cfg, root)
    if args.reuse_fingerprint and _fingerprint_reusable(folders.fingerprint, args.allow_nonfinite):
        log.info("reusing %s", folders.fingerprint)
    else:
        run_fingerprint(root, folders, args.num_workers, args.allow_nonfinite)
    planner = _planner(cfg, args)
    user_splits = root / "splits.json"
    plans, explain = run_plan(
        folders,
        planner,
        args.plan_overrides,
        to_plain(cfg),
        int(cfg.num_folds),
        int(cfg.seed),
        user_splits if user_splits.is_file() else None,
    )
    if args.explain:
        print("why:\n  " + "\n  ".join(explain.lines))
    print(format_plans(plans))
    print(f"plans written to {folders.plans(planner.name)}; splits in {folders.splits}")
    if not args.no_preprocess:
        configs = args.configurations or planned_configurations(plans)
        for out in run_preprocess(root, folders, plans, configs, args.num_workers):
            print(f"preprocessed cases in {out}")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from autoseg.stages import read_plans, run_preprocess

    cfg = _config(args, [f"planner={args.preset}"])
    root = _dataset_root(args, cfg)
    folders = _folders(cfg, root)
    plans = read_plans(folders, args.plans_name or str(cfg.planner.name))
    for out in run_preprocess(root, folders, plans, args.configurations, args.num_workers):
        print(f"preprocessed cases in {out}")
    return 0


def _demo_heldout(raw: Path, num_cases: int, num_workers: int | None) -> tuple[Path, Path]:
    """Held-out cases (another seed) as the dataset's imagesTs/labelsTs."""
    import shutil

    from autoseg.synthetic import SyntheticSpec, generate_dataset

    spare = generate_dataset(
        raw.parent / ".heldout", SyntheticSpec(num_cases=num_cases, seed=1000, distractors=False), num_workers
    )
    for kind in ("images", "labels"):
        target = raw / f"{kind}Ts"
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(spare / f"{kind}Tr"), target)
    shutil.rmtree(spare)
    return raw / "imagesTs", raw / "labelsTs"


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic dataset -> plan -> short training -> predict held-out cases -> evaluate -> pictures."""
    import json

    from autoseg.synthetic import SyntheticSpec, generate_dataset

    out = Path(args.out).resolve()
    workers = [] if args.num_workers is None else ["--num-workers", str(args.num_workers)]
    raw = generate_dataset(
        out / "raw" / "Dataset900_Demo",
        SyntheticSpec(num_cases=10, seed=0, distractors=False),
        args.num_workers,
    )
    images_ts, labels_ts = _demo_heldout(raw, 3, args.num_workers)
    roots = [f"paths.preprocessed={out / 'preprocessed'}", f"paths.results={out / 'results'}"]
    longer = ["trainer.epochs=10"]  # the quick trainer's 5 x 20 iterations learn only the larger class
    print(f"[1/5] synthetic dataset of 10 MR-like cases with 2 classes, 3 held out: {raw}")
    print("[2/5] autoseg plan (validate, fingerprint, plan, preprocess):")
    steps: list[tuple[str, list[str]]] = [
        ("plan", ["plan", str(raw), *roots, "-c", "3d_fullres", "--explain", *workers]),
        (
            "[3/5] autoseg train 3d_fullres fold 0 with the quick trainer, 10 epochs x 20 iterations, CPU:",
            ["train", str(raw), "3d_fullres", "0", *roots, "--trainer", "quick", "--device", "cpu", *longer],
        ),
    ]
    model = out / "results" / raw.name
    predictions = out / "predictions"
    fast = ["-c", "3d_fullres", "-f", "0", "--png", "--device", "cpu"]
    steps += [
        (
            "[4/5] autoseg predict on the held-out cases (masks in their own geometry, overlay PNGs):",
            [*("predict", "-i", str(images_ts), "-o", str(predictions), "-m", str(model)), *fast],
        ),
        (
            "[5/5] autoseg evaluate against the held-out labels:",
            ["evaluate", str(predictions), str(labels_ts), "-o", str(predictions / "summary.json")],
        ),
    ]
    for i, (title, argv) in enumerate(steps):
        if i:
            print(title)
        code = main(argv)
        if code != 0:
            return code
    summary = json.loads((predictions / "summary.json").read_text())
    dice = {name: round(m["dice"], 4) for name, m in summary["mean"].items() if m["dice"] is not None}
    fold = model / "default" / "3d_fullres" / "fold_0"
    print(f"held-out Dice per class: {dice}")
    print(f"pictures: training curves {fold / 'progress.png'}")
    for png in sorted(predictions.glob("*.png")):
        print(f"          overlay {png}")
    print(f"demo finished; everything is under {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from autoseg.commands import register_all

    parser = argparse.ArgumentParser(
        prog="autoseg", description="Self-configuring medical image segmentation."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def dataset_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("dataset", help="DatasetXXX_Name, its number, or the path of a raw dataset folder")
        p.add_argument("--num-workers", type=int, default=None, help="worker processes (default: all cores)")
        p.add_argument(
            "overrides", nargs="*", help="hydra key=value overrides; CONFIG.FIELD=VALUE plan overrides"
        )
        return p

    p = sub.add_parser("synthetic", help="write a synthetic dataset in nnU-Net v2 raw layout")
    p.add_argument("out_folder", type=Path)
    p.add_argument("--num-cases", type=int, default=12)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=2, help="foreground classes")
    p.add_argument("--shape", type=int, nargs=3, default=[32, 48, 48], metavar=("Z", "Y", "X"))
    p.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("Z", "Y", "X"))
    p.add_argument("--modality", choices=["ct", "mr"], default="mr")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=1)
    p.set_defaults(func=cmd_synthetic)

    dataset_cmd("validate", "check a raw dataset and list every problem").set_defaults(func=cmd_validate)
    dataset_cmd("fingerprint", "validate and fingerprint a raw dataset").set_defaults(func=cmd_fingerprint)

    p = dataset_cmd("plan", "validate, fingerprint, plan and preprocess a raw dataset")
    p.add_argument("-c", "--configurations", nargs="+", default=None, help="configurations to preprocess")
    p.add_argument(
        "--preset", default="default", help="planner preset: default, resenc-m, resenc-l, resenc-xl"
    )
    p.add_argument("--gpu-memory", type=float, default=None, help="GPU memory to plan for, GB (default 8)")
    p.add_argument("--plans-name", default=None, help="name of the plans (default: the preset's name)")
    p.add_argument("--explain", action="store_true", help="print why each decision was made")
    p.add_argument("--no-preprocess", action="store_true", help="stop after planning")
    p.add_argument("--reuse-fingerprint", action="store_true", help="reuse an existing fingerprint.json")
    p.add_argument(
        "--allow-nonfinite",
        type=float,
        default=None,
        metavar="VALUE",
        help="replace NaN/inf intensities by VALUE (logged, recorded in plans.json) instead of refusing them",
    )
    p.set_defaults(func=cmd_plan)

    p = dataset_cmd("preprocess", "preprocess a planned dataset for one or more configurations")
    p.add_argument("-c", "--configurations", nargs="+", required=True)
    p.add_argument("--preset", default="default")
    p.add_argument("--plans-name", default=None)
    p.set_defaults(func=cmd_preprocess)

    register_all(sub)

    p = sub.add_parser(
        "demo", help="synthetic data -> plan -> short training -> predict -> evaluate -> pictures, on the CPU"
    )
    p.add_argument("--out", default="demo_out")
    p.add_argument("--num-workers", type=int, default=None)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autoseg`` command; returns the exit code."""
    parser = build_parser()
    # key=value overrides may stand anywhere, also after options: argparse leaves those to us
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or "=" not in e]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra and not hasattr(args, "overrides"):
        parser.error(f"{args.command} takes no key=value overrides: {' '.join(extra)}")
    args.overrides = [*(getattr(args, "overrides", None) or []), *extra]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    if not args.verbose:
        logging.getLogger("highdicom").setLevel(logging.WARNING)  # it narrates every copied DICOM module
    hydra, plan = _split_overrides(getattr(args, "overrides", []) or [])
    args.hydra_overrides, args.plan_overrides = hydra, plan
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from autoseg.io.dataset import DatasetNotFoundError
    from autoseg.io.validation import DatasetValidationError
    from autoseg.training.lock import FoldLockedError
    from autoseg.utils.files import ArtifactError, WriteError

    try:
        return int(args.func(args))
    except DatasetValidationError as err:
        print(
            f"autoseg {args.command}: the dataset has problems; nothing was written.\n{err}", file=sys.stderr
        )
        return 1
    except (
        DatasetNotFoundError,
        ArtifactError,
        WriteError,
        FoldLockedError,
        ValueError,
        FileNotFoundError,
        HydraException,
        OmegaConfBaseException,
    ) as err:
        print(f"autoseg {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
