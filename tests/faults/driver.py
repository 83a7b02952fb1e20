"""Fault-injection driver: run an ``autoseg`` stage, SIGKILL it at a chosen point, rerun, compare.

A kill point is either ``"POINT:N"`` (the process kills itself the N-th time it reaches POINT, see
:mod:`autoseg.utils.faults`) or ``"time:SECONDS"`` (the driver sends SIGKILL after that long). After
the kill the stage is run again (``--resume`` for training, when a checkpoint exists) and its
result is compared with an uninterrupted run's: the preprocessed arrays and JSON, the trained
weights (CPU, deterministic), the predicted masks.

Used by ``tests/faults/test_kills.py`` (a few points, for CI) and ``benchmarks/bench_faults.py``
(``--long``: many seeded points, a table for RESULTS.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TIMEOUT_S = 300


@dataclass
class KillResult:
    """One kill point of one stage."""

    stage: str
    point: str
    killed: bool  # the process died of SIGKILL (False: it finished before the point)
    identical: bool  # the rerun's result equals the uninterrupted run's
    where: str = ""  # what the process was doing, from its last fault-injection line


def autoseg(args: Sequence[str], kill_at: str | None = None, timeout: float = TIMEOUT_S) -> tuple[int, str]:
    """Run ``python -m autoseg ARGS`` (one thread), optionally killed at ``kill_at``; (exit code, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AUTOSEG_KILL_AT", None)
    if kill_at and not kill_at.startswith("time:"):
        env["AUTOSEG_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "autoseg", *args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_at and kill_at.startswith("time:"):
        try:
            process.wait(float(kill_at.split(":", 1)[1]))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def _where(stderr: str) -> str:
    marker = "fault injection: SIGKILL at "
    if marker not in stderr:
        return ""
    return stderr.rsplit(marker, 1)[1].splitlines()[0].strip()


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes() + str(array.dtype).encode()).hexdigest()


def snapshot_preprocessed(root: Path) -> dict[str, Any]:
    """Every artifact under a preprocessed dataset folder: arrays by content, JSON parsed (no run record)."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".npy":
            out[rel] = _digest(np.load(path))
        elif path.suffix == ".npz":
            with np.load(path) as npz:
                out[rel] = {k: _digest(npz[k]) for k in sorted(npz.files)}
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
            data.pop("run", None)  # the resolved config names the run's own folders
            out[rel] = data
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def snapshot_weights(checkpoint: Path) -> dict[str, str]:
    """The network weights of a checkpoint, by content."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {k: _digest(v.numpy()) for k, v in state["network"].items()}


def snapshot_predictions(folder: Path) -> dict[str, str]:
    """The masks of a predict output folder, by voxel content, and the list of cases (without timings)."""
    from autoseg.io.images import read_image

    masks = {p.name: _digest(read_image(p)[0]) for p in sorted(folder.glob("*.nii.gz"))}
    cases = (
        json.loads((folder / "predict.json").read_text())["cases"]
        if (folder / "predict.json").exists()
        else None
    )
    for case in cases or []:
        case.pop("finished_s", None)  # a timing, not a result
    return {**masks, "predict.json cases": json.dumps(cases, sort_keys=True)}


def kill_and_rerun(
    stage: str,
    point: str,
    args: Sequence[str],
    snapshot: Any,
    reference: Any,
    rerun_args: Any = None,
) -> KillResult:
    """Run ``autoseg ARGS`` killed at ``point``, rerun it (``rerun_args()`` if given), compare snapshots."""
    code, err = autoseg(args, kill_at=point)
    killed = code == -signal.SIGKILL
    again = list(rerun_args() if rerun_args is not None else args)
    code2, err2 = autoseg(again)
    if code2 != 0:
        raise AssertionError(f"{stage} rerun after a kill at {point} failed ({code2}):\n{err2[-3000:]}")
    return KillResult(stage, point, killed, snapshot() == reference, _where(err))


def table(results: Sequence[KillResult]) -> str:
    """Markdown: stage, kill points tried, killed, identical after rerun."""
    lines = ["| stage | kill points tried | killed there | identical after rerun |", "|---|---:|---:|---:|"]
    for stage in dict.fromkeys(r.stage for r in results):
        rows = [r for r in results if r.stage == stage]
        killed = sum(r.killed for r in rows)
        same = sum(r.identical for r in rows)
        lines.append(f"| {stage} | {len(rows)} | {killed} | {same} of {len(rows)} |")
    return "\n".join(lines)


def elapsed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


TRAIN = [
    "--trainer",
    "quick",
    "trainer.epochs=2",
    "trainer.iterations_per_epoch=3",
    "trainer.val_iterations=1",
    "trainer.num_workers=0",
    "trainer.deterministic=true",
    "trainer.final_validation=false",
    "trainer.seed=3",
    "--device",
    "cpu",
]


@dataclass
class Scenario:
    """A tiny synthetic dataset and the uninterrupted reference runs of plan, train and predict."""

    root: Path
    raw: Path
    heldout: Path

    @classmethod
    def create(cls, root: Path, seed: int = 5) -> Scenario:
        from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

        easy: dict[str, Any] = {"classes": 1, "shape": (16, 24, 24), "noise": 0.05, "distractors": False}
        raw = generate_dataset(
            root / "raw" / "Dataset970_Faults", SyntheticSpec(num_cases=4, seed=seed, **easy), 1
        )
        heldout = generate_dataset(
            root / "raw" / "Dataset971_Heldout", SyntheticSpec(num_cases=2, seed=seed + 1, **easy), 1
        )
        return cls(root, raw, heldout / "imagesTr")

    def roots(self, tag: str, pre: str | None = None) -> list[str]:
        return [
            f"paths.preprocessed={self.root / (pre or tag) / 'pre'}",
            f"paths.results={self.root / tag / 'results'}",
            "num_folds=2",
        ]

    def plan(self, tag: str) -> list[str]:
        return ["plan", str(self.raw), *self.roots(tag), "-c", "3d_fullres", "--num-workers", "1"]

    def preprocessed(self, tag: str) -> Path:
        return self.root / tag / "pre" / self.raw.name

    def train(self, tag: str, resume: bool = False) -> list[str]:
        args = ["train", str(self.raw), "3d_fullres", "0", *self.roots(tag, pre="ref"), *TRAIN]
        return [*args, "--resume"] if resume else args

    def fold(self, tag: str) -> Path:
        return self.root / tag / "results" / self.raw.name / "default" / "3d_fullres" / "fold_0"

    def train_rerun(self, tag: str) -> list[str]:
        """The rerun after a kill: ``--resume`` when a latest checkpoint was written, else from the start."""
        return self.train(tag, resume=(self.fold(tag) / "checkpoint_latest.pt").exists())

    def model(self) -> Path:
        return self.root / "ref" / "results" / self.raw.name

    def predict(self, tag: str) -> list[str]:
        out = self.root / tag / "predictions"
        args = ["predict", "-i", str(self.heldout), "-o", str(out), "-m", str(self.model()), "-f", "0"]
        return [*args, "--device", "cpu", "--no-tta"]

    def predictions(self, tag: str) -> Path:
        return self.root / tag / "predictions"

    def references(self) -> dict[str, Any]:
        """Run plan, train and predict once without a kill; their snapshots."""
        for args in (self.plan("ref"), self.train("ref"), self.predict("ref")):
            code, err = autoseg(args)
            if code != 0:
                raise AssertionError(f"reference run {args[0]} failed ({code}):\n{err[-3000:]}")
        return {
            "plan": snapshot_preprocessed(self.preprocessed("ref")),
            "train": snapshot_weights(self.fold("ref") / "checkpoint_final.pt"),
            "predict": snapshot_predictions(self.predictions("ref")),
        }

    def kill_plan(self, tag: str, point: str, reference: Any) -> KillResult:
        return kill_and_rerun(
            "plan", point, self.plan(tag), lambda: snapshot_preprocessed(self.preprocessed(tag)), reference
        )

    def kill_train(self, tag: str, point: str, reference: Any) -> KillResult:
        return kill_and_rerun(
            "train",
            point,
            self.train(tag),
            lambda: snapshot_weights(self.fold(tag) / "checkpoint_final.pt"),
            reference,
            rerun_args=lambda: self.train_rerun(tag),
        )

    def kill_predict(self, tag: str, point: str, reference: Any) -> KillResult:
        return kill_and_rerun(
            "predict",
            point,
            self.predict(tag),
            lambda: snapshot_predictions(self.predictions(tag)),
            reference,
        )
