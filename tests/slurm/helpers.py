"""Helpers of the SLURM tests: the queue, waiting with a deadline, a planned tiny dataset."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoseg.cli import main
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset


def squeue(*args: str) -> str:
    """``squeue --noheader ARGS`` (stdout)."""
    return subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True, check=True).stdout


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen, log: Path):  # type: ignore[no-untyped-def]
    """Poll ``condition()`` until it returns something truthy (returned); fail naming ``what`` on a
    timeout, or at once with the log when ``process`` ends first."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"autoseg ended (exit {process.returncode}) before {what}:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{log.read_text()}")


def autoseg_process(argv: list[str], log: Path) -> subprocess.Popen:
    """``autoseg ARGV`` of this venv as a process, its output in ``log``."""
    stream = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "autoseg", *argv], stdout=stream, stderr=subprocess.STDOUT)


def planned_dataset(root: Path, number: int, seed: int) -> tuple[Path, list[str]]:
    """A tiny synthetic dataset planned (3d_fullres, 16^3 patch, 2 folds); its folder and path overrides."""
    spec = SyntheticSpec(num_cases=6, shape=(20, 24, 24), seed=seed)
    raw = generate_dataset(root / "raw" / f"Dataset{number}_Slurm{seed}", spec)
    roots = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'res'}"]
    plan = ["plan", str(raw), *roots, "num_folds=2", "-c", "3d_fullres", "--num-workers", "1"]
    assert main([*plan, "3d_fullres.patch_size=[16,16,16]"]) == 0
    return raw, roots
