"""``autoseg sweep SWEEP.yaml``: plan, train through a launcher, find-best, leaderboard, manifest.

The sweep folder is ``<results>/sweeps/<name>/``:

- ``runs/<preset>-seed<N>/`` is the results root of one (preset, seed): its
  ``<Dataset>/<plans>/<configuration>/fold_<k>`` folders and find-best's ``selection.json``;
- ``logs/`` holds the output of the planning and find-best steps;
- ``leaderboard.{md,csv,json}`` and ``manifest.json``.

Each dataset is planned and preprocessed once per planner preset (plans named after the preset) in
the shared preprocessed root. A rerun skips what is finished: plans whose ``plans.json`` and
configuration folders exist, folds with ``checkpoint_final.pt`` and a validation summary, and
find-best when its ``selection.json`` is newer than every fold's final checkpoint; a fold with a
``checkpoint_latest.pt`` but no final one is resubmitted with ``--resume``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.sweep.jobs import FoldJob, summary_table
from autoseg.sweep.leaderboard import write_leaderboard
from autoseg.sweep.local import Slot, run_queue
from autoseg.sweep.manifest import write_manifest
from autoseg.sweep.slurm import SlurmConfig, run_slurm
from autoseg.sweep.spec import Row, SweepSpec

__all__ = ["Roots", "SweepLauncher", "run_sweep"]


@dataclass(frozen=True)
class Roots:
    """The raw root (may be None when every dataset is a path), the preprocessed and results roots."""

    raw: Path | None
    preprocessed: Path
    results: Path


@dataclass(frozen=True)
class SweepLauncher:
    """How the trainings run: local slots, or SLURM jobs with ``slurm``'s settings."""

    name: str
    slots: tuple[Slot, ...] = ()
    slurm: SlurmConfig | None = None
    settings: dict[str, Any] | None = None  # as recorded in the manifest


@dataclass(frozen=True)
class _Dataset:
    raw: Path

    @property
    def name(self) -> str:
        return self.raw.name


def _autoseg(argv: Sequence[str], log: Path) -> int:
    """Run ``autoseg ARGV`` here, its output appended to ``log``; the exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream:
        stream.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}: autoseg {' '.join(argv)}\n")
        stream.flush()
        return subprocess.run(
            [sys.executable, "-m", "autoseg", *argv], stdout=stream, stderr=subprocess.STDOUT
        ).returncode


def _paths(roots: Roots, results: Path) -> list[str]:
    raw = [f"paths.raw={roots.raw}"] if roots.raw is not None else []
    return [*raw, f"paths.preprocessed={roots.preprocessed}", f"paths.results={results}"]


def _plan(spec: SweepSpec, roots: Roots, dataset: _Dataset, planner: str, logs: Path) -> str | None:
    """Plan and preprocess ``dataset`` with ``planner`` unless done; an error message, or None."""
    folder = roots.preprocessed / dataset.name / planner
    if (folder / "plans.json").is_file() and all((folder / c).is_dir() for c in spec.configurations):
        print(f"plans {planner} of {dataset.name}: already there")
        return None
    log = logs / f"plan-{dataset.name}-{planner}.log"
    argv = ["plan", str(dataset.raw), "--preset", planner, "--plans-name", planner]
    argv += [*_paths(roots, roots.results), f"num_folds={spec.num_folds}", *spec.plan_overrides]
    print(f"planning {dataset.name} with preset {planner}; log {log}", flush=True)
    if _autoseg([*argv, "-c", *spec.configurations], log) != 0:
        return f"planning {dataset.name} ({planner}) failed: see {log}"
    return None


def fold_done(output: Path) -> bool:
    """A fold is finished when it has its final checkpoint and its validation summary."""
    return (output / "checkpoint_final.pt").is_file() and (output / "validation" / "summary.json").is_file()


def _jobs(spec: SweepSpec, roots: Roots, datasets: Sequence[_Dataset], folder: Path) -> tuple[list, list]:
    """(every training as (dataset, row, FoldJob), the FoldJobs still to run)."""
    everything, todo = [], []
    for dataset in datasets:
        for row in spec.rows:
            results = folder / "runs" / row.run_name
            plans = row.preset.planner
            for fold in spec.folds:
                output = results / dataset.name / plans / row.configuration / f"fold_{fold}"
                argv = [
                    "train",
                    str(dataset.raw),
                    row.configuration,
                    str(fold),
                    "--trainer",
                    row.preset.trainer,
                ]
                argv += ["--plans-name", plans, *_paths(roots, results), f"trainer.seed={row.seed}"]
                argv += [*spec.overrides, *row.preset.overrides]
                if not fold_done(output) and (output / "checkpoint_latest.pt").is_file():
                    argv.append("--resume")
                job = FoldJob(row.configuration, fold, output, argv)
                everything.append((dataset, row, job))
                if not fold_done(output):
                    todo.append(job)
    return everything, todo


def _launch(jobs: list[FoldJob], launcher: SweepLauncher, name: str) -> None:
    if not jobs:
        return
    if launcher.slurm is not None:
        run_slurm(jobs, launcher.slurm, name=f"sweep-{name}")
    else:
        run_queue(jobs, launcher.slots)
    print(summary_table(jobs))


def _find_best(spec: SweepSpec, roots: Roots, dataset: _Dataset, row: Row, folder: Path) -> str | None:
    """find-best over the sweep's configurations of ``row``'s (preset, seed); an error, or None."""
    results = folder / "runs" / row.run_name
    model = results / dataset.name
    finals = list((model / row.preset.planner).glob("*/fold_*/checkpoint_final.pt"))
    selection = model / "selection.json"
    if selection.is_file() and all(selection.stat().st_mtime >= f.stat().st_mtime for f in finals):
        return None
    log = folder / "logs" / f"find-best-{dataset.name}-{row.run_name}.log"
    argv = [
        "find-best",
        str(dataset.raw),
        "--plans-name",
        row.preset.planner,
        "--num-folds",
        str(spec.num_folds),
    ]
    print(f"find-best for {dataset.name}, {row.run_name}; log {log}", flush=True)
    if _autoseg([*argv, *_paths(roots, results), "-c", *spec.configurations], log) != 0:
        return f"find-best of {dataset.name} ({row.run_name}) failed: see {log}"
    return None


def _cv_summaries(spec: SweepSpec, dataset: _Dataset, folder: Path) -> dict[str, Any]:
    """Row name -> its cv_summary.json, for the rows that have one."""
    from autoseg.utils.files import ArtifactError, read_artifact

    found = {}
    for row in spec.rows:
        path = folder / "runs" / row.run_name / dataset.name / row.preset.planner / row.configuration
        try:
            found[row.name] = read_artifact(path / "cv_summary.json", "cv_summary", 1)
        except ArtifactError as err:
            print(f"leaderboard: {row.name} of {dataset.name} is missing ({err})", file=sys.stderr)
    return found


def run_sweep(spec: SweepSpec, roots: Roots, launcher: SweepLauncher, datasets: Sequence[Path]) -> int:
    """Run the sweep (``datasets``: the raw folders of ``spec.datasets``); the exit code."""
    started = time.time()
    folder = roots.results / "sweeps" / spec.name
    logs = folder / "logs"
    data = [_Dataset(Path(d)) for d in datasets]
    errors = [
        e
        for d in data
        for planner in dict.fromkeys(p.planner for p in spec.presets)
        if (e := _plan(spec, roots, d, planner, logs))
    ]
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    everything, todo = _jobs(spec, roots, data, folder)
    print(
        f"{len(everything)} trainings: {len(everything) - len(todo)} finished, {len(todo)} to submit",
        flush=True,
    )
    _launch(todo, launcher, spec.name)
    failed = [j for j in todo if j.exit_code != 0]
    errors = [f"{j.configuration} fold {j.fold} failed: see {j.output / 'launcher.log'}" for j in failed]
    if not spec.all_folds:
        print("find-best and the leaderboard need every fold (folds: all); skipped", file=sys.stderr)
    else:
        for dataset in data:
            for row in {r.run_name: r for r in spec.rows}.values():
                finished = all(
                    fold_done(j.output)
                    for d, r, j in everything
                    if d == dataset and r.run_name == row.run_name
                )
                if finished and (error := _find_best(spec, roots, dataset, row, folder)):
                    errors.append(error)
        baseline = spec.baseline
        boards = {d.name: {"baseline": baseline, "cv": _cv_summaries(spec, d, folder)} for d in data}
        paths = write_leaderboard(folder, spec.name, boards)
        print(f"leaderboard: {paths['md']} (and {paths['csv'].name}, {paths['json'].name})")
    plans = {
        f"{d.name}/{p.planner}": roots.preprocessed / d.name / p.planner / "plans.json"
        for d in data
        for p in spec.presets
    }
    settings = launcher.settings or {"name": launcher.name}
    manifest = write_manifest(folder, spec, settings, everything, todo, plans, started)
    print(f"manifest: {manifest}")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    return 0


def local_slots(parallel: int, device: str) -> tuple[Slot, ...]:
    """``parallel`` local slots on ``device`` (CPU jobs share the cores' threads)."""
    if parallel < 1:
        raise ValueError(f"launcher.parallel={parallel}: give a whole number >= 1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = (
        {"OMP_NUM_THREADS": str(max(1, cores // parallel)), "CUDA_VISIBLE_DEVICES": ""}
        if device == "cpu"
        else {}
    )
    return tuple(Slot(f"{device} {k}", device, env) for k in range(parallel))
