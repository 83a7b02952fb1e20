"""``autoseg train DATASET CONFIG FOLD``: train (or only validate) one fold of a planned configuration.

Three ways to run it:

- one process: ``autoseg train DATASET CONFIG FOLD``;
- data-parallel over N GPUs (or N CPU processes with ``--device cpu``): ``--gpus N`` (or a list of
  GPU ids, ``--gpus 0,1``) starts ``torchrun`` with this same command; launching it yourself with
  ``torchrun --nproc-per-node N -m autoseg train ...`` (also across nodes) does the same;
- every fold, one process per GPU: ``autoseg train DATASET CONFIG[,CONFIG...] all-folds --gpus 0,1``
  (``--parallel N --device cpu`` on CPUs), queueing the folds, each with its own log, and a
  summary at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autoseg.commands.common import compose_config, dataset_folders, dataset_root

ALL_FOLDS = "all-folds"
log = logging.getLogger("autoseg")


def _dataset(args: argparse.Namespace, cfg: Any) -> tuple[Path, Any, list[dict[str, list[str]]]]:
    """The raw dataset folder, its :class:`autoseg.stages.DatasetFolders` and the folds of splits.json."""
    from autoseg.planning.splits import SPLITS_SCHEMA_VERSION
    from autoseg.utils.files import read_artifact

    root = dataset_root(args.dataset, cfg)
    folders = dataset_folders(cfg, root)
    return root, folders, read_artifact(folders.splits, "splits", SPLITS_SCHEMA_VERSION)["folds"]


def fold_spec(args: argparse.Namespace, cfg: Any, fold: int | str, configuration: str | None = None) -> Any:
    """The :class:`autoseg.training.setup.FoldSpec` of ``fold`` from the plans and splits on disk.

    ``configuration`` defaults to ``args.configuration``.
    """
    from autoseg.config import Paths
    from autoseg.stages import planned_configurations, read_plans
    from autoseg.training.setup import FoldSpec, fold_cases

    configuration = configuration or args.configuration
    root, folders, splits = _dataset(args, cfg)
    plans_name = args.plans_name or "default"
    plans = read_plans(folders, plans_name)
    planned = planned_configurations(plans)
    if configuration not in planned:
        raise ValueError(
            f"configuration {configuration!r} is not in {folders.plans(plans_name)} "
            f"(planned: {', '.join(planned)})"
        )
    train, val = fold_cases(splits, fold, [c["name"] for c in plans["fingerprint"]["cases"]])
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

    return TrainerConfig.from_mapping(dict(OmegaConf.to_container(cfg.trainer, resolve=True)))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# one fold, in this process (or as one rank of a torchrun job)


def train_one(args: argparse.Namespace) -> int:
    """Train (or validate) one fold here; under torchrun, as this process's rank."""
    from autoseg.config import to_plain
    from autoseg.training.distributed import DistributedContext, process_group, rank_device, report_failure
    from autoseg.training.setup import pick_device, train_fold, validate_only

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
# launchers: torchrun for one fold, a queue of single-process jobs for all folds


def parse_gpus(text: str) -> tuple[int, list[int] | None]:
    """``--gpus``: ``N`` -> (N, None), the first N visible GPUs; ``0,2`` or ``3,`` -> those ids.

    Example:
        >>> parse_gpus("4"), parse_gpus("0,2"), parse_gpus("3,")
        ((4, None), (2, [0, 2]), (1, [3]))
    """
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return count, None
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--gpus {text!r}: give a count (4) or GPU ids (0,1,2,3; one id as 3,)") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise ValueError(f"--gpus {text!r}: GPU ids must be distinct and >= 0")
    return len(ids), ids


def child_argv(
    args: argparse.Namespace, configuration: str, fold: int | str, device: str | None = None
) -> list[str]:
    """``autoseg`` arguments that run ``configuration`` ``fold`` with this command's other options."""
    argv = ["-v"] if getattr(args, "verbose", False) else []
    argv += ["train", args.dataset, configuration, str(fold), "--trainer", args.trainer]
    argv += ["--device", device] if device is not None else []
    argv += ["--dist-timeout", str(args.dist_timeout), "--checkpoint", args.checkpoint]
    if args.plans_name:
        argv += ["--plans-name", args.plans_name]
    argv += ["--resume"] if args.resume else []
    argv += ["--val-only"] if args.val_only else []
    return argv + list(args.overrides or [])


def _launch_device(args: argparse.Namespace, what: str) -> str:
    """The ``--device`` of launched processes: cpu, or cuda (each picks its GPU)."""
    import torch

    if args.device == "cpu":
        return "cpu"
    if args.device not in ("auto", "cuda"):
        raise ValueError(f"{what}: --device {args.device}: use cuda (pick GPUs with --gpus) or cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{what}: no CUDA GPU is visible; add --device cpu to run CPU processes instead")
    return "cuda"


def launch_torchrun(args: argparse.Namespace) -> int:
    """``--gpus``: run this command under ``torchrun --standalone`` with one rank per GPU."""
    if "WORLD_SIZE" in os.environ:
        raise ValueError("--gpus starts torchrun itself: leave it out when launching with torchrun")
    count, ids = parse_gpus(args.gpus)
    device = _launch_device(args, "--gpus")
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
    with _terminate_on_sigterm(lambda: [process]):
        return process.wait()


@contextmanager
def _terminate_on_sigterm(processes: Callable[[], Iterable[subprocess.Popen]]) -> Iterator[None]:
    """While in the block, SIGTERM (a batch scheduler's cancel) terminates the ``processes()``
    running at that moment, then this process, instead of leaving them running."""

    def stop(signum: int, frame: Any) -> None:
        for process in processes():
            process.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Slot:
    """Where one job of the all-folds queue runs: a GPU, or a share of the CPUs."""

    name: str
    device: str
    env: dict[str, str]


@dataclass
class FoldJob:
    """One fold of one configuration in the all-folds queue, and how it ended."""

    configuration: str
    fold: int
    output: Path
    argv: list[str]
    slot: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    mean_dice: float | None = None


def all_folds_slots(args: argparse.Namespace) -> list[Slot]:
    """One slot per GPU of ``--gpus``, or ``--parallel`` slots on ``--device`` (threads shared)."""
    if args.gpus is not None and args.parallel is not None:
        raise ValueError("all-folds: give --gpus (one job per GPU) or --parallel N, not both")
    if args.gpus is not None:
        count, ids = parse_gpus(args.gpus)
        device = _launch_device(args, "all-folds --gpus")
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


def _mean_dice(output: Path) -> float | None:
    """The mean over labels of ``validation/summary.json``'s ``mean``, None without one."""
    path = output / "validation" / "summary.json"
    try:
        mean = json.loads(path.read_text()).get("mean")
    except (OSError, ValueError):
        return None
    values = list(mean.values()) if isinstance(mean, dict) else [mean]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


@dataclass
class _Running:
    job: FoldJob
    slot: Slot
    process: subprocess.Popen
    log: IO[str]
    start: float


def _start(job: FoldJob, slot: Slot) -> _Running:
    """Start ``job`` on ``slot``, its output appended to ``<fold folder>/launcher.log``."""
    argv = [*job.argv, "--device", slot.device]
    job.output.mkdir(parents=True, exist_ok=True)
    stream = (job.output / "launcher.log").open("a")
    stream.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {slot.name}: autoseg {' '.join(argv)}\n")
    stream.flush()
    process = subprocess.Popen(
        [sys.executable, "-m", "autoseg", *argv],
        env={**os.environ, **slot.env},
        stdout=stream,
        stderr=subprocess.STDOUT,
    )
    job.slot = slot.name
    print(f"started {job.configuration} fold {job.fold} on {slot.name}; log {stream.name}", flush=True)
    return _Running(job, slot, process, stream, time.perf_counter())


def _ended(run: _Running) -> None:
    """Record how a finished job ended."""
    run.log.close()
    job = run.job
    job.exit_code, job.seconds = run.process.returncode, time.perf_counter() - run.start
    job.mean_dice = _mean_dice(job.output) if job.exit_code == 0 else None
    state = "done" if job.exit_code == 0 else f"FAILED (exit {job.exit_code})"
    print(f"{state}: {job.configuration} fold {job.fold} after {job.seconds:.0f} s", flush=True)


def run_queue(jobs: Sequence[FoldJob], slots: Sequence[Slot], poll_s: float = 0.2) -> None:
    """Run ``jobs`` as ``autoseg`` subprocesses, one per free slot, until all have ended.

    Interrupting the queue (Ctrl-C, SIGTERM) terminates the running jobs.
    """
    pending, free = deque(jobs), list(slots)
    running: list[_Running] = []
    try:
        with _terminate_on_sigterm(lambda: [r.process for r in running]):
            while pending or running:
                while pending and free:
                    running.append(_start(pending.popleft(), free.pop(0)))
                time.sleep(poll_s)
                for run in [r for r in running if r.process.poll() is not None]:
                    running.remove(run)
                    free.append(run.slot)
                    _ended(run)
    finally:
        for run in running:
            run.process.terminate()
            run.process.wait()
            _ended(run)


def summary_table(jobs: Sequence[FoldJob]) -> str:
    """A text table: configuration, fold, slot, exit code, duration, final validation mean Dice."""
    rows = [("configuration", "fold", "slot", "exit", "time", "mean Dice")]
    for j in jobs:
        dice = f"{j.mean_dice:.4f}" if j.mean_dice is not None else "-"
        code = "-" if j.exit_code is None else str(j.exit_code)
        rows.append((j.configuration, str(j.fold), j.slot, code, f"{j.seconds:.0f} s", dice))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def write_summary(jobs: Sequence[FoldJob]) -> Path:
    """``all_folds_summary.json`` in the plans' results folder: one entry per job."""
    path = jobs[0].output.parents[1] / "all_folds_summary.json"
    entries = [
        {
            "configuration": j.configuration,
            "fold": j.fold,
            "slot": j.slot,
            "exit_code": j.exit_code,
            "seconds": round(j.seconds, 1),
            "mean_dice": j.mean_dice,
            "log": str(j.output / "launcher.log"),
        }
        for j in jobs
    ]
    path.write_text(json.dumps(entries, indent=2) + "\n")
    return path


def train_all_folds(args: argparse.Namespace) -> int:
    """``all-folds``: every fold of every configuration given, queued over the slots."""
    cfg = compose_config(args, [f"trainer={args.trainer}"])
    trainer = trainer_config(cfg)  # a bad override fails here, not in every job
    configurations = [c for c in args.configuration.split(",") if c]
    folds = args.folds if args.folds is not None else list(range(len(_dataset(args, cfg)[2])))
    if not configurations or not folds:
        raise ValueError("all-folds: no configuration or no fold to train")
    slots = all_folds_slots(args)
    # the data workers of the parallel jobs share the CPUs (alone, each would take min(cores - 1, 12))
    workers = (
        [] if trainer.num_workers is not None else [f"trainer.num_workers={_workers_per_job(len(slots))}"]
    )
    jobs = []
    for configuration in configurations:
        for fold in folds:
            output = fold_spec(args, cfg, fold, configuration).output  # checks configuration and fold
            argv = [*child_argv(args, configuration, fold), *workers]
            jobs.append(FoldJob(configuration, fold, output, argv))
    print(f"{len(jobs)} jobs ({', '.join(configurations)}; folds {folds}) on {len(slots)} slot(s)")
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
