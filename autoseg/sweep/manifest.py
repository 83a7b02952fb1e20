"""``manifest.json`` of a sweep: what is needed to repeat it.

It records the sweep file (its text and SHA-256), the git commit of the autoseg checkout, the
versions of autoseg and its main libraries, the launcher and its settings, the seeds, the SHA-256
of each plans.json used, and every training: its row, fold, seed, status, where it ran, and the hash
of the resolved config it recorded in ``run.json``. Each invocation of the sweep is appended to
``invocations`` (how many trainings it submitted, skipped and saw fail).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from autoseg.report.collect import config_hash, git_commit
from autoseg.sweep.jobs import FoldJob
from autoseg.sweep.spec import SweepSpec
from autoseg.utils.files import write_artifact

__all__ = ["MANIFEST_SCHEMA_VERSION", "write_manifest"]

MANIFEST_SCHEMA_VERSION = 1
PACKAGES = ("autoseg", "torch", "monai", "numpy", "scipy", "SimpleITK", "torchio", "hydra-core", "submitit")


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _run_config_hash(output: Path) -> str | None:
    try:
        return config_hash(json.loads((output / "run.json").read_text()).get("config", {}))
    except (OSError, ValueError):
        return None


def _previous(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("invocations", [])) if isinstance(data, dict) else []


def write_manifest(
    folder: Path,
    spec: SweepSpec,
    launcher: Mapping[str, Any],
    trainings: Sequence[tuple[Any, Any, FoldJob]],
    submitted: Sequence[FoldJob],
    plans: Mapping[str, Path],
    started: float,
) -> Path:
    """Write ``<folder>/manifest.json`` (atomically).

    Args:
        trainings: (dataset, row, job) of every fold of the sweep.
        submitted: the jobs this invocation ran.
        plans: ``<Dataset>/<plans name>`` -> its plans.json.
    """
    path = folder / "manifest.json"
    ran = {id(j) for j in submitted}
    entries = []
    for dataset, row, job in trainings:
        done = (job.output / "checkpoint_final.pt").is_file()
        status = (
            ("done" if job.exit_code == 0 else "failed")
            if id(job) in ran
            else ("finished before" if done else "missing")
        )
        entries.append(
            {
                "dataset": dataset.name,
                "row": row.name,
                "preset": row.preset.name,
                "configuration": job.configuration,
                "fold": job.fold,
                "seed": row.seed,
                "status": status,
                "slot": job.slot or None,
                "output": str(job.output.relative_to(folder)),
                "config_hash": _run_config_hash(job.output),
            }
        )
    invocation = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "submitted": len(submitted),
        "failed": sum(1 for j in submitted if j.exit_code != 0),
        "skipped": len(trainings) - len(submitted),
    }
    body = {
        "sweep": {
            "name": spec.name,
            "file": str(spec.path),
            "sha256": _sha256(spec.path),
            "text": spec.path.read_text(),
        },
        "git_commit": git_commit(),
        "versions": _versions(),
        "host": f"{platform.node()} ({platform.system()} {platform.machine()})",
        "launcher": dict(launcher),
        "seeds": list(spec.seeds),
        "plans_sha256": {key: _sha256(file) for key, file in plans.items()},
        "trainings": entries,
        "invocations": [*_previous(path), invocation],
    }
    return write_artifact(path, "sweep_manifest", MANIFEST_SCHEMA_VERSION, body)
