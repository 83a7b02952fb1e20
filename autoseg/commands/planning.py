"""``autoseg synthetic / validate / fingerprint / plan / preprocess``: the planning stages.

Each composes the hydra config, calls one stage of :mod:`autoseg.planning.stages` and prints what it did.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from autoseg.commands.common import add_allow_nonfinite, compose_config, dataset_folders, dataset_root

log = logging.getLogger("autoseg")
#: Trainer keys that plans.json's run record leaves out (each fold's run.json has them).
TRAINING_ONLY = ("loss", "optimizer", "amp_dtype", "max_nonfinite_steps", "augment_on")


def _planner(cfg: Any, args: argparse.Namespace) -> Any:
    from omegaconf import OmegaConf

    from autoseg.planning.presets import PlannerConfig

    data: dict[str, Any] = dict(OmegaConf.to_container(cfg.planner, resolve=True))  # type: ignore[arg-type]
    if getattr(args, "gpu_memory", None) is not None:
        from autoseg.planning.gpu import parse_gpu_memory

        data["gpu_memory_gb"], data["gpu_memory_source"] = parse_gpu_memory(str(args.gpu_memory))
    if getattr(args, "plans_name", None):
        data["name"] = args.plans_name
    return PlannerConfig.from_mapping(data)


def cmd_synthetic(args: argparse.Namespace) -> int:
    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    if args.regions:
        from autoseg.synthetic.labels import generate_regions_dataset

        out = generate_regions_dataset(args.out_folder, args.num_cases, tuple(args.shape), args.seed)
        print(f"synthetic BraTS-like region dataset with {args.num_cases} cases written to {out}")
        return 0

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

    cfg = compose_config(args)
    root = dataset_root(args.dataset, cfg)
    problems = validate_dataset(load_raw_dataset(root), num_workers=args.num_workers)
    print(format_problems(problems) if problems else f"{root}: no problems found")
    return 1 if any(p.severity == "error" for p in problems) else 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from autoseg.planning.stages import run_fingerprint

    cfg = compose_config(args)
    root = dataset_root(args.dataset, cfg)
    fp = run_fingerprint(root, dataset_folders(cfg, root), args.num_workers)
    print(
        f"fingerprint: {fp['num_cases']} cases, median spacing {fp['median_spacing']}, "
        f"median shape after crop {fp['median_shape_after_crop']}"
    )
    return 0


def format_plans(plans: Any) -> str:
    """A compact, human-readable summary of :class:`autoseg.contracts.Plans`."""
    lines = [
        f"plans {plans.plans_name!r} for {plans.dataset_name}: "
        f"axis order {list(plans.transpose_forward)}, "
        f"median spacing {[round(s, 4) for s in plans.original_median_spacing]}, "
        f"median shape {list(plans.original_median_shape)}"
    ]
    for name, c in plans.configurations.items():
        if name not in plans.planned:
            lines.append(f"  {name}: {c.previous_stage} -> {name} (the cascade's second stage)")
            continue
        arch = c.architecture
        lines.append(
            f"  {name}: spacing {[round(s, 4) for s in c.spacing]}, "
            f"median {_numbers(c.median_image_size_in_voxels)}, "
            f"patch {list(c.patch_size)}, batch {c.batch_size}, {arch.n_stages} stages "
            f"({arch.network}, features {list(arch.features_per_stage)}), "
            f"strides {[list(s) for s in arch.strides]}, kernels {[list(k) for k in arch.kernel_sizes]}, "
            f"normalization {list(c.normalization_schemes)} mask {list(c.use_mask_for_norm)}, "
            f"batch_dice {c.batch_dice}"
        )
    if plans.overrides:
        lines.append(f"  overrides: {list(plans.overrides)}")
    return "\n".join(lines)


def _numbers(values: Any) -> list[float | int]:
    return [int(v) if float(v).is_integer() else v for v in values]


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


def _planning_record(cfg: Any, choice: Any) -> dict[str, Any]:
    """The resolved config recorded in plans.json.

    The training-only parts added after plans.json's schema 1 (the ``augment`` group and the trainer
    keys in :data:`TRAINING_ONLY`) are left out: each fold's run.json records them. ``preprocessing``
    is there when it is not the default, so plans made with nnU-Net's preprocessing stay byte for
    byte what they were.
    """
    from autoseg.commands.config import to_plain
    from autoseg.preprocessing.steps import PreprocessingChoice

    record = to_plain(cfg)
    record.pop("augment", None)
    for key in TRAINING_ONLY:
        record.get("trainer", {}).pop(key, None)
    if choice == PreprocessingChoice():
        record.pop("preprocessing", None)
    return record


def cmd_plan(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from autoseg.planning.stages import run_fingerprint, run_plan, run_preprocess
    from autoseg.preprocessing.steps import PreprocessingChoice

    cfg = compose_config(args, [f"planner={args.preset}"])
    root = dataset_root(args.dataset, cfg)
    folders = dataset_folders(cfg, root)
    if args.reuse_fingerprint and _fingerprint_reusable(folders.fingerprint, args.allow_nonfinite):
        log.info("reusing %s", folders.fingerprint)
    else:
        run_fingerprint(root, folders, args.num_workers, args.allow_nonfinite)
    planner = _planner(cfg, args)
    user_splits = root / "splits.json"
    choice = PreprocessingChoice.from_mapping(OmegaConf.to_container(cfg.preprocessing, resolve=True))  # type: ignore[arg-type]
    plans, explain = run_plan(
        folders,
        planner,
        args.plan_overrides,
        _planning_record(cfg, choice),
        int(cfg.num_folds),
        int(cfg.seed),
        user_splits if user_splits.is_file() else None,
        choice,
        root,
    )
    if args.explain:
        print("why:\n  " + "\n  ".join(explain.lines))
    print(format_plans(plans))
    print(f"plans written to {folders.plans(planner.name)}; splits in {folders.splits}")
    if not args.no_preprocess:
        configs = args.configurations or list(plans.planned)
        for out in run_preprocess(root, folders, plans, configs, args.num_workers):
            print(f"preprocessed cases in {out}")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from autoseg.planning.stages import read_plans, run_preprocess

    cfg = compose_config(args, [f"planner={args.preset}"])
    root = dataset_root(args.dataset, cfg)
    folders = dataset_folders(cfg, root)
    plans = read_plans(folders, args.plans_name or str(cfg.planner.name))
    for out in run_preprocess(root, folders, plans, args.configurations, args.num_workers):
        print(f"preprocessed cases in {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add synthetic, validate, fingerprint, plan and preprocess to the ``autoseg`` parser."""

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
    p.add_argument(
        "--regions",
        action="store_true",
        help="BraTS-like instead: 2 MR channels, nested regions whole/core/enhancing (uses --num-cases, "
        "--shape, --seed)",
    )
    p.set_defaults(func=cmd_synthetic)

    dataset_cmd("validate", "check a raw dataset and list every problem").set_defaults(func=cmd_validate)
    dataset_cmd("fingerprint", "validate and fingerprint a raw dataset").set_defaults(func=cmd_fingerprint)

    p = dataset_cmd("plan", "validate, fingerprint, plan and preprocess a raw dataset")
    p.add_argument("-c", "--configurations", nargs="+", default=None, help="configurations to preprocess")
    p.add_argument(
        "--preset", default="default", help="planner preset: default, resenc-m, resenc-l, resenc-xl"
    )
    p.add_argument(
        "--gpu-memory",
        default=None,
        help="GPU memory to plan for, GB, or 'auto': the smallest visible GPU's (default: 8 everywhere)",
    )
    p.add_argument("--plans-name", default=None, help="name of the plans (default: the preset's name)")
    p.add_argument("--explain", action="store_true", help="print why each decision was made")
    p.add_argument("--no-preprocess", action="store_true", help="stop after planning")
    p.add_argument("--reuse-fingerprint", action="store_true", help="reuse an existing fingerprint.json")
    add_allow_nonfinite(p, "plans.json", "without it they are refused")
    p.set_defaults(func=cmd_plan)

    p = dataset_cmd("preprocess", "preprocess a planned dataset for one or more configurations")
    p.add_argument("-c", "--configurations", nargs="+", required=True)
    p.add_argument("--preset", default="default")
    p.add_argument("--plans-name", default=None)
    p.set_defaults(func=cmd_preprocess)
