"""``autoseg train DATASET CONFIG FOLD``: train (or only validate) one fold of a planned configuration."""

from __future__ import annotations

import argparse
from typing import Any

from autoseg.commands.common import compose_config, dataset_folders, dataset_root


def fold_spec(args: argparse.Namespace, cfg: Any, fold: int | str) -> Any:
    """The :class:`autoseg.training.setup.FoldSpec` of ``fold`` from the plans and splits on disk."""
    from autoseg.config import Paths
    from autoseg.planning.splits import SPLITS_SCHEMA_VERSION
    from autoseg.stages import planned_configurations, read_plans
    from autoseg.training.setup import FoldSpec, fold_cases
    from autoseg.utils.files import read_artifact

    root = dataset_root(args.dataset, cfg)
    folders = dataset_folders(cfg, root)
    plans_name = args.plans_name or "default"
    plans = read_plans(folders, plans_name)
    planned = planned_configurations(plans)
    if args.configuration not in planned:
        raise ValueError(
            f"configuration {args.configuration!r} is not in {folders.plans(plans_name)} "
            f"(planned: {', '.join(planned)})"
        )
    splits = read_artifact(folders.splits, "splits", SPLITS_SCHEMA_VERSION)["folds"]
    train, val = fold_cases(splits, fold, [c["name"] for c in plans["fingerprint"]["cases"]])
    results = Paths.from_config(cfg).require("results")
    return FoldSpec(
        preprocessed=folders.root,
        plans=plans,
        configuration=args.configuration,
        fold=fold,
        train_cases=tuple(train),
        val_cases=tuple(val),
        output=results / folders.root.name / plans_name / args.configuration / f"fold_{fold}",
        raw_root=root,
    )


def trainer_config(cfg: Any) -> Any:
    """The frozen :class:`autoseg.training.config.TrainerConfig` of the composed config."""
    from omegaconf import OmegaConf

    from autoseg.training.config import TrainerConfig

    return TrainerConfig.from_mapping(dict(OmegaConf.to_container(cfg.trainer, resolve=True)))  # type: ignore[arg-type]


def cmd_train(args: argparse.Namespace) -> int:
    from autoseg.config import to_plain
    from autoseg.training.setup import pick_device, train_fold, validate_only

    cfg = compose_config(args, [f"trainer={args.trainer}"])
    fold = args.fold if args.fold == "all" else int(args.fold)
    spec = fold_spec(args, cfg, fold)
    trainer = trainer_config(cfg)
    device = pick_device(args.device)
    if args.val_only:
        summary = validate_only(spec, trainer, device, args.checkpoint)
        print(
            f"validated {args.configuration} fold {fold} ({args.checkpoint} checkpoint): mean Dice "
            f"{summary['mean']}; output in {spec.output / 'validation'}"
        )
        return 0
    state = train_fold(spec, trainer, device, resume=args.resume, config=to_plain(cfg))
    print(
        f"trained {args.configuration} fold {fold} for {state.epoch} epochs; best EMA pseudo-Dice "
        f"{state.best_ema:.4f} at epoch {state.best_epoch}; output in {spec.output}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one fold of a planned configuration")
    p.add_argument("dataset", help="DatasetXXX_Name, its number, or the path of a raw dataset folder")
    p.add_argument("configuration", help="2d, 3d_fullres or 3d_lowres")
    p.add_argument("fold", help="0..4, or all")
    p.add_argument("--resume", action="store_true", help="continue from checkpoint_latest.pt exactly")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--trainer", default="default", help="trainer preset: default (1000 x 250) or quick")
    p.add_argument("--plans-name", default=None, help="plans to train from (default: default)")
    p.add_argument(
        "--val-only",
        action="store_true",
        help="only rerun the final validation of a trained fold (from --checkpoint)",
    )
    p.add_argument("--checkpoint", default="final", choices=["final", "best", "latest"])
    p.add_argument(
        "overrides", nargs="*", help="hydra overrides, e.g. trainer.epochs=50 trainer.batch_size=2"
    )
    p.set_defaults(func=cmd_train)
