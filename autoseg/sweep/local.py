"""The local launcher: a queue of ``autoseg train`` subprocesses over slots (GPUs or CPU shares)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from autoseg.sweep.jobs import FoldJob, fold_mean_dice

__all__ = ["Slot", "run_queue", "terminate_on_sigterm"]


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
    """Where one job of the local queue runs: a GPU, or a share of the CPUs."""

    name: str
    device: str
    env: dict[str, str]


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
