"""The SLURM tests run on a real one-node cluster on localhost (scripts/slurm-local.sh).

The session fixture :func:`slurm_cluster` starts it (installing slurm-wlm and munge with apt-get
when missing and run as root) and stops it at the end. When it cannot start, the tests that need it
FAIL with the script's output: they are never skipped. ``pytest -k slurm`` selects them all.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm-local.sh"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """SLURM_CONF of the running one-node cluster (set in os.environ for the session)."""
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{SCRIPT} start did not finish in 15 minutes: {err.stdout!r} {err.stderr!r}")
    output = started.stdout + started.stderr
    match = re.search(r"export SLURM_CONF=(\S+)", started.stdout)
    if started.returncode != 0 or match is None:
        why = f"{SCRIPT} start, exit {started.returncode}"
        pytest.fail(f"the one-node SLURM cluster did not start ({why}):\n{output}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = match.group(1)
    try:
        yield Path(match.group(1))
    finally:
        if "already running" not in started.stdout:  # leave a cluster someone else started alone
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
