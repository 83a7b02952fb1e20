"""The process machinery of ``autoseg train``'s launchers (:mod:`autoseg.commands.train`).

Not a command module: :mod:`autoseg.commands.train` imports from it.

- ``--gpus``: :func:`parse_gpus` and :func:`child_argv`, which the torchrun relaunch and the
  all-folds queue share, and the device launched processes get (:func:`launch_device`);
- ``all-folds``: the queue itself, :class:`Slot` and :class:`FoldJob`, :func:`run_queue` (one
  ``autoseg`` subprocess per free slot, each with its own ``launcher.log``), and the summary at
  the end (:func:`summary_table`, :func:`write_summary`).
"""

from __future__ import annotations

import argparse
import json
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


def launch_device(args: argparse.Namespace, what: str) -> str:
    """The ``--device`` of launched processes: cpu, or cuda (each picks its GPU)."""
    import torch

    if args.device == "cpu":
        return "cpu"
    if args.device not in ("auto", "cuda"):
        raise ValueError(f"{what}: --device {args.device}: use cuda (pick GPUs with --gpus) or cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{what}: no CUDA GPU is visible; add --device cpu to run CPU processes instead")
    return "cuda"


@contextmanager
def terminate_on_sigterm(processes: Callable[[], Iterable[subprocess.Popen]]) -> Iterator[None]:
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


def fold_mean_dice(output: Path) -> float | None:
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
    job.mean_dice = fold_mean_dice(job.output) if job.exit_code == 0 else None
    state = "done" if job.exit_code == 0 else f"FAILED (exit {job.exit_code})"
    print(f"{state}: {job.configuration} fold {job.fold} after {job.seconds:.0f} s", flush=True)


def run_queue(jobs: Sequence[FoldJob], slots: Sequence[Slot], poll_s: float = 0.2) -> None:
    """Run ``jobs`` as ``autoseg`` subprocesses, one per free slot, until all have ended.

    Interrupting the queue (Ctrl-C, SIGTERM) terminates the running jobs.
    """
    pending, free = deque(jobs), list(slots)
    running: list[_Running] = []
    try:
        with terminate_on_sigterm(lambda: [r.process for r in running]):
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
    from autoseg.utils.files import write_json

    return write_json(path, entries)
