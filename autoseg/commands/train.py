"""``autoseg train DATASET CONFIG FOLD``: train (or only validate) one fold of a planned configuration.

Three ways to run it:

- one process: ``autoseg train DATASET CONFIG FOLD``;
- data-parallel over N GPUs (or N CPU processes with ``--device cpu``): ``--gpus N`` (or a list of
  GPU ids, ``--gpus 0,1``) starts ``torchrun`` with this same command; launching it yourself with
  ``torchrun --nproc-per-node N -m autoseg train ...`` (also across nodes) does the same;
- every fold, one process per GPU: ``autoseg train DATASET CONFIG[,CONFIG...] all-folds --gpus 0,1``
  (``--parallel N --device cpu`` on CPUs), queueing the folds, each with its own log, and a
  summary at the end; with ``--launcher slurm``, one SLURM job per fold instead (resources from
  ``conf/launcher/slurm.yaml`` and ``launcher.KEY=VALUE`` overrides), requeued and resumed when
  SLURM stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from autoseg.commands.common import compose_config, dataset_folders, dataset_root, launcher_settings
from autoseg.commands.launch import (
    FoldJob,
    Slot,
    child_argv,
    launch_device,
    parse_gpus,
    run_queue,
    summary_table,
    terminate_on_sigterm,
    write_summary,
)

ALL_FOLDS = "all-folds"
log = logging.getLogger("autoseg")


def _dataset(args: argparse.Namespace, cfg: Any) -> tuple[Path, Any, list[dict[str, list[str]]]]:
    """The raw dataset, its :class:`~autoseg.planning.stages.DatasetFolders`, the folds of splits.json."""
    from autoseg.planning.splits import SPLITS_SCHEMA_VERSION
    from autoseg.utils.files import read_artifact

    root = dataset_root(args.dataset, cfg)
    folders = dataset_folders(cfg, root)
    return root, folders, read_artifact(folders.splits, "splits", SPLITS_SCHEMA_VERSION)["folds"]


def fold_spec(args: argparse.Namespace, cfg: Any, fold: int | str, configuration: str | None = None) -> Any:
    """The :class:`autoseg.training.setup.FoldSpec` of ``fold`` from the plans and splits on disk.

    ``configuration`` defaults to ``args.configuration``.
    """
    from autoseg.commands.config import Paths
    from autoseg.planning.stages import read_plans
    from autoseg.training.spec import FoldSpec, fold_cases

    configuration = configuration or args.configuration
    root, folders, splits = _dataset(args, cfg)
    plans_name = args.plans_name or "default"
    plans = read_plans(folders, plans_name)
    planned = plans.planned
    stage = plans.configurations.get(configuration)
    cascade = stage is not None and stage.previous_stage in planned  # trained on the previous stage's maps
    if configuration not in planned and not cascade:
        raise ValueError(
            f"configuration {configuration!r} is not in {folders.plans(plans_name)} "
            f"(planned: {', '.join(planned)})"
        )
    train, val = fold_cases(splits, fold, list(plans.case_names))
    results = Paths.from_config(cfg).require("results")
    return FoldSpec(
        preprocessed=folders.root,
        plans=plans,
        configuration=configuration,
        fold=fold,
        train_cases=tuple(train),
        val_cases=tuple(val),
        output=results / folders.root.name / plans_name / configuration / f"fold_{fold}",
        raw_root=root,
    )


def trainer_config(cfg: Any) -> Any:
    """The frozen :class:`autoseg.training.config.TrainerConfig` of the composed config."""
    from omegaconf import OmegaConf

    from autoseg.training.config import TrainerConfig

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    augment = OmegaConf.to_container(cfg.augment, resolve=True)
    return TrainerConfig.from_mapping(trainer, augment)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# one fold, in this process (or as one rank of a torchrun job)


def train_one(args: argparse.Namespace) -> int:
    """Train (or validate) one fold here; under torchrun, as this process's rank."""
    from autoseg.commands.config import to_plain
    from autoseg.training.distributed import DistributedContext, process_group, rank_device, report_failure
    from autoseg.training.setup import train_fold, validate_only
    from autoseg.utils.device import pick_device

    cfg = compose_config(args, [f"trainer={args.trainer}"])
    fold = args.fold if args.fold == "all" else int(args.fold)
    spec = fold_spec(args, cfg, fold)
    trainer = trainer_config(cfg)
    device = pick_device(args.device)
    ctx = DistributedContext.from_env(os.environ, device, args.dist_timeout * 60)  # torchrun's variables
    if args.val_only:
        if ctx.enabled:
            raise ValueError("--val-only runs in one process: start it without torchrun/--gpus")
        summary = validate_only(spec, trainer, device, args.checkpoint)
        print(
            f"validated {args.configuration} fold {fold} ({args.checkpoint} checkpoint): mean Dice "
            f"{summary['mean']}; output in {spec.output / 'validation'}"
        )
        return 0
    device = rank_device(ctx, device)
    if not ctx.is_main:
        logging.getLogger("autoseg").setLevel(logging.WARNING)  # rank 0 speaks for all
    try:
        with process_group(ctx, device):
            state = train_fold(
                spec, trainer, device, resume=args.resume, config=to_plain(cfg), distributed=ctx
            )
    except Exception as err:
        if not ctx.enabled:
            raise
        report_failure(ctx, err)
        return 1
    if ctx.is_main:
        print(
            f"trained {args.configuration} fold {fold} for {state.epoch} epochs; best EMA pseudo-Dice "
            f"{state.best_ema:.4f} at epoch {state.best_epoch}; output in {spec.output}"
        )
    return 0


# ---------------------------------------------------------------------------------------------
# launchers: torchrun for one fold, a queue of single-process jobs for all folds; they resolve the
# folds here, their process machinery is in autoseg.commands.launch


def launch_torchrun(args: argparse.Namespace) -> int:
    """``--gpus``: run this command under ``torchrun --standalone`` with one rank per GPU."""
    if "WORLD_SIZE" in os.environ:
        raise ValueError("--gpus starts torchrun itself: leave it out when launching with torchrun")
    count, ids = parse_gpus(args.gpus)
    device = launch_device(args, "--gpus")
    cfg = compose_config(args, [f"trainer={args.trainer}"])
    trainer_config(cfg)  # clear errors before launching
    fold_spec(args, cfg, args.fold if args.fold == "all" else int(args.fold))
    env = dict(os.environ)
    if ids is not None and device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(count)]
    command += ["-m", "autoseg", *child_argv(args, args.configuration, args.fold, device)]
    log.info("launching %d ranks: %s", count, " ".join(command))
    process = subprocess.Popen(command, env=env)
    with terminate_on_sigterm(lambda: [process]):
        return process.wait()


def all_folds_slots(args: argparse.Namespace) -> list[Slot]:
    """One slot per GPU of ``--gpus``, or ``--parallel`` slots on ``--device`` (threads shared)."""
    if args.gpus is not None and args.parallel is not None:
        raise ValueError("all-folds: give --gpus (one job per GPU) or --parallel N, not both")
    if args.gpus is not None:
        count, ids = parse_gpus(args.gpus)
        device = launch_device(args, "all-folds --gpus")
        if device == "cpu":
            return [Slot(f"cpu {k}", "cpu", _cpu_env(count)) for k in range(count)]
        return [Slot(f"gpu {i}", "cuda", {"CUDA_VISIBLE_DEVICES": str(i)}) for i in ids or range(count)]
    parallel = args.parallel or 1
    if parallel < 1:
        raise ValueError(f"--parallel {parallel} must be >= 1")
    env = _cpu_env(parallel) if args.device == "cpu" else {}
    return [Slot(f"{args.device} {k}", args.device, env) for k in range(parallel)]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_env(jobs: int) -> dict[str, str]:
    """CPU jobs: no GPU, and each job's torch threads a share of the cores."""
    return {"OMP_NUM_THREADS": str(max(1, _cores() // jobs)), "CUDA_VISIBLE_DEVICES": ""}


def _workers_per_job(jobs: int) -> int:
    """Data-loading workers per job when ``jobs`` run at once: their share of the cores, at most 12."""
    return max(0, min(_cores() // jobs - 1, 12))


def _all_folds_jobs(args: argparse.Namespace, cfg: Any, workers: list[str]) -> list[FoldJob]:
    """One :class:`FoldJob` per (configuration, fold) of ``args``, each checked against the plans."""
    configurations = [c for c in args.configuration.split(",") if c]
    folds = args.folds if args.folds is not None else list(range(len(_dataset(args, cfg)[2])))
    if not configurations or not folds:
        raise ValueError("all-folds: no configuration or no fold to train")
    jobs = []
    for configuration in configurations:
        for fold in folds:
            output = fold_spec(args, cfg, fold, configuration).output  # checks configuration and fold
            argv = [*child_argv(args, configuration, fold), *workers]
            jobs.append(FoldJob(configuration, fold, output, argv))
    print(f"{len(jobs)} jobs ({', '.join(configurations)}; folds {folds}) on launcher {args.launcher}")
    return jobs


def train_all_folds(args: argparse.Namespace) -> int:
    """``all-folds``: every fold of every configuration given, queued over local slots or SLURM jobs."""
    cfg = compose_config(args, [f"trainer={args.trainer}", f"launcher={args.launcher}"])
    trainer = trainer_config(cfg)  # a bad override fails here, not in every job
    if args.launcher == "slurm":
        from autoseg.sweep.slurm import SlurmConfig, run_slurm

        if args.gpus is not None or args.parallel is not None:
            raise ValueError(
                "--gpus and --parallel are for --launcher local; SLURM jobs ask for launcher.gpus_per_job"
            )
        settings = launcher_settings(cfg)
        slurm = SlurmConfig.from_mapping(settings)
        jobs_cpus = max(0, min(slurm.cpus_per_job - 1, 12))
        workers = [] if trainer.num_workers is not None else [f"trainer.num_workers={jobs_cpus}"]
        jobs = _all_folds_jobs(args, cfg, workers)
        run_slurm(jobs, slurm, name=f"autoseg-{_dataset(args, cfg)[1].root.name}")
    else:
        slots = all_folds_slots(args)
        # the data workers of the parallel jobs share the CPUs (alone, each would take min(cores - 1, 12))
        workers = (
            [] if trainer.num_workers is not None else [f"trainer.num_workers={_workers_per_job(len(slots))}"]
        )
        jobs = _all_folds_jobs(args, cfg, workers)
        print(f"local queue: {len(slots)} slot(s)")
        run_queue(jobs, slots)
    print(summary_table(jobs))
    summary = write_summary(jobs)
    failed = [j for j in jobs if j.exit_code != 0]
    if failed:
        print(
            f"{len(failed)} of {len(jobs)} jobs failed: see their launcher.log; summary in {summary}",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(jobs)} jobs done; summary in {summary}")
    return 0


def _fold_list(text: str) -> list[int]:
    """``--folds 0,2,4`` -> [0, 2, 4]."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give fold numbers joined by commas, as 0,1") from None


def cmd_train(args: argparse.Namespace) -> int:
    if args.fold == ALL_FOLDS:
        return train_all_folds(args)
    if args.launcher != "local":
        raise ValueError(
            f"--launcher {args.launcher} goes with all-folds (autoseg train D 3d_fullres all-folds)"
        )
    if args.folds is not None or args.parallel is not None:
        raise ValueError("--folds and --parallel go with all-folds (autoseg train D 3d_fullres all-folds)")
    if "," in args.configuration:
        raise ValueError("several configurations go with all-folds only")
    if args.gpus is not None:
        if args.val_only:
            raise ValueError("--val-only runs in one process: leave out --gpus")
        return launch_torchrun(args)
    return train_one(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one fold of a planned configuration (or all folds in parallel)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="DatasetXXX_Name, its number, or the path of a raw dataset folder")
    p.add_argument("configuration", help="2d, 3d_fullres or 3d_lowres (all-folds: several, as 2d,3d_fullres)")
    p.add_argument("fold", help="0..4; all (train on every case); or all-folds (each fold, in parallel)")
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
        "--gpus",
        default=None,
        help="one fold: data-parallel over N GPUs (N, or ids 0,1,2) via torchrun, or N CPU processes "
        "with --device cpu; all-folds: one fold per GPU at a time",
    )
    p.add_argument(
        "--parallel", type=int, default=None, help="all-folds without --gpus: N jobs at a time on --device"
    )
    p.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="all-folds: local (a queue of processes here) or slurm (one SLURM job per fold, set in "
        "conf/launcher/slurm.yaml and launcher.KEY=VALUE overrides)",
    )
    p.add_argument(
        "--folds", type=_fold_list, default=None, help="all-folds: these folds, e.g. 0,1 (default: all)"
    )
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=30.0,
        metavar="MIN",
        help="data-parallel: minutes a rank waits for the others before failing (default 30)",
    )
    p.add_argument(
        "overrides", nargs="*", help="hydra overrides, e.g. trainer.epochs=50 trainer.batch_size=2"
    )
    p.set_defaults(func=cmd_train)
