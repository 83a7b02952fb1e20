"""Prepare what ``benchmarks/gpu_acceptance.py`` needs on a bare GPU machine, in one folder.

The GPU machine has torch and Python but not MONAI, TorchIO, SimpleITK, pydicom or hydra, cannot
reach a package registry, and receives at most 64 MiB. So planning and preprocessing happen here,
and the folder holds only what the GPU steps import::

    python benchmarks/gpu_bundle.py [--dataset ../shared/data/Dataset004_Hippocampus] \
        [--out benchmarks/work/gpu_bundle] [--python-version 3.12]

writes ``<out>/``:

- ``pre.tar.gz``: the preprocessed dataset (3d_fullres, plans.json, splits.json);
- ``src/``: the autoseg package and ``benchmarks/gpu_acceptance.py``;
- ``wheels/``: MONAI (pure Python; autoseg's U-Net is MONAI's DynUNet), tqdm and numpy for that
  Python, downloaded with ``pip download --no-deps`` (``run.sh`` unpacks only those the machine
  lacks);
- ``run.sh``: unpacks, runs the acceptance on ``cuda`` and copies the table, acceptance.json and the
  training log to ``$OUT`` (the checkpoints stay on the machine).

It fails when the folder exceeds ``--max-mib`` (64).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ("monai", "tqdm", "numpy")  # what the GPU steps import beyond torch and the standard library

RUN_SH = """#!/usr/bin/env bash
# Run autoseg's GPU acceptance from this bundle (made by benchmarks/gpu_bundle.py).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
mkdir -p site data
[ -d data/@DATASET@ ] || tar xzf pre.tar.gz -C data
for name in monai tqdm numpy; do  # unpack (= install) a wheel only where the machine lacks it
  if ! "$PY" -c "import $name" 2>/dev/null; then
    "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall('site')" wheels/$name-*.whl
  fi
done
export PYTHONPATH="$PWD/src:$PWD/site${PYTHONPATH:+:$PYTHONPATH}"
work=${WORK:-/tmp/autoseg_gpu_acceptance}
status=0
"$PY" src/benchmarks/gpu_acceptance.py --device cuda --preprocessed data/@DATASET@ \\
  --out "$work" "$@" | tee table.txt || status=$?
if [ -n "${OUT:-}" ]; then
  cp table.txt "$OUT"/ ; cp "$work"/acceptance.json "$work"/training.log "$OUT"/ 2>/dev/null || true
fi
exit $status
"""


def plan(dataset: Path, work: Path) -> Path:
    """``autoseg plan DATASET -c 3d_fullres`` into ``work``; the preprocessed dataset folder."""
    cmd = [sys.executable, "-m", "autoseg", "plan", str(dataset), f"paths.preprocessed={work}"]
    subprocess.run([*cmd, "-c", "3d_fullres", "--num-workers", "2"], check=True)
    return work / dataset.name


def pack_preprocessed(pre: Path, out: Path) -> None:
    with tarfile.open(out / "pre.tar.gz", "w:gz") as tar:
        for path in sorted(pre.rglob("*")):
            if path.is_file() and path.name != "fingerprint.json":
                tar.add(path, arcname=str(path.relative_to(pre.parent)))


def copy_sources(out: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "autoseg", "benchmarks/gpu_acceptance.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in files:
        target = out / "src" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def download_wheels(out: Path, python_version: str) -> None:
    """The installed versions of :data:`WHEELS`, built for ``python_version`` on x86_64 Linux."""
    pins = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    platforms = [
        f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            *platforms,
            "--python-version",
            python_version,
            "-d",
            str(out / "wheels"),
            *pins,
        ],
        check=True,
    )


def size_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024**2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "Dataset004_Hippocampus")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "work" / "gpu_bundle")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (for numpy's wheel)")
    p.add_argument("--max-mib", type=float, default=64.0)
    args = p.parse_args(argv)
    if not (args.dataset / "dataset.json").is_file():
        raise SystemExit(f"--dataset {args.dataset}: no dataset.json there; give the raw dataset folder")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        pack_preprocessed(plan(args.dataset, Path(work)), args.out)
    copy_sources(args.out)
    download_wheels(args.out, args.python_version)
    (args.out / "run.sh").write_text(RUN_SH.replace("@DATASET@", args.dataset.name))
    (args.out / "run.sh").chmod(0o755)
    size = size_mib(args.out)
    print(f"bundle in {args.out}: {size:.1f} MiB")
    if size > args.max_mib:
        raise SystemExit(f"the bundle is {size:.1f} MiB, more than --max-mib {args.max_mib}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
