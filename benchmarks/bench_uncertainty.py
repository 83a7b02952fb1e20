#!/usr/bin/env python
"""Seconds of ``autoseg predict --uncertainty`` beside a plain ``autoseg predict``, this tree and another.

The model (not timed): a synthetic easy task (``autoseg.synthetic``, ``--cases`` training cases of
``--shape``), ``autoseg plan -c 3d_fullres`` and ``autoseg train ... 3d_fullres 0`` for two short epochs
on the CPU with this tree. The input: ``--heldout`` synthetic cases of the same kind.

Timed, each a fresh process (``python -m autoseg predict -i IN -o OUT -m MODEL -c 3d_fullres -f 0
--device cpu [--uncertainty]``, TTA on: 8 mirrors are the members), for each source tree (this one,
and ``--before SRC``, a checkout of another version put first on ``PYTHONPATH``), alternating the
order per repeat: the wall time of the whole command. Reported: the median seconds per tree and
mode, the ratio uncertainty / plain per tree and the ratio of the uncertainty runs this / before,
and whether each tree's masks with ``--uncertainty`` are identical (every voxel) to its plain masks.
nnU-Net has no uncertainty maps, so no nnU-Net run here.

Usage::

    git archive main | tar -x -C /tmp/before     # the version to compare with
    .venv/bin/python benchmarks/bench_uncertainty.py --before /tmp/before [--repeat 3] \
        [--cases 4] [--heldout 3] [--shape 48 64 64] [--out benchmarks/work/bench_uncertainty] \
        [--model RESULTS/DatasetX --inputs IMAGES]   # an already trained model (its fold 0) instead
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds of ``cmd`` run in ``cwd`` (not the repository: ``-m`` puts the cwd first on sys.path)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _model(out: Path, cases: int, heldout: int, shape: list[int]) -> tuple[Path, Path]:
    from autoseg.cli import main
    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    def spec(num: int, seed: int) -> SyntheticSpec:
        size = (shape[0], shape[1], shape[2])
        return SyntheticSpec(num_cases=num, seed=seed, classes=1, shape=size, noise=0.05, distractors=False)

    raw = generate_dataset(out / "raw" / "Dataset940_Uncertainty", spec(cases, 3))
    inputs = generate_dataset(out / "raw" / "Dataset941_Input", spec(heldout, 7))
    paths = [f"paths.preprocessed={out / 'pre'}", f"paths.results={out / 'results'}", "num_folds=2"]
    train = ["trainer.epochs=2", "trainer.iterations_per_epoch=4", "trainer.val_iterations=1"]
    train += ["trainer.num_workers=0", "trainer.final_validation=false", "trainer.seed=1"]
    assert main(["plan", str(raw), *paths, "-c", "3d_fullres", "--num-workers", "1"]) == 0
    assert main(["train", str(raw), "3d_fullres", "0", *paths, *train, "--device", "cpu"]) == 0
    return out / "results" / raw.name, inputs / "imagesTr"


def _same_masks(a: Path, b: Path) -> bool:
    from autoseg.io.images import read_image

    files = sorted(p.name for p in a.glob("*.nii.gz"))
    return bool(files) and all(np.array_equal(read_image(a / f)[0], read_image(b / f)[0]) for f in files)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="source tree of the version to compare with")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--heldout", type=int, default=3)
    p.add_argument("--shape", type=int, nargs=3, default=[48, 64, 64])
    p.add_argument("--model", type=Path, default=None, help="a trained model folder to use instead (fold 0)")
    p.add_argument("--inputs", type=Path, default=None, help="with --model: the images to predict")
    p.add_argument("--out", type=Path, default=HERE / "benchmarks" / "work" / "bench_uncertainty")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    if args.model is not None and args.inputs is not None:
        model, inputs = args.model.resolve(), args.inputs.resolve()
    else:
        model, inputs = _model(args.out, args.cases, args.heldout, args.shape)
    trees = {"this": HERE, "before": args.before.resolve()}
    for tree, src in trees.items():  # each tree's own package is the one imported
        probe = [sys.executable, "-c", "import autoseg; print(autoseg.__file__)"]
        env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
        found = subprocess.run(probe, env=env, cwd=args.out, capture_output=True, text=True).stdout.strip()
        if not found.startswith(str(src)):
            raise SystemExit(f"{tree}: autoseg imported from {found}, not {src}")
    seconds: dict[str, dict[str, list[float]]] = {t: {"plain": [], "uncertainty": []} for t in trees}
    for r in range(args.repeat):
        for tree in list(trees) if r % 2 == 0 else list(reversed(trees)):
            env = dict(os.environ, PYTHONPATH=str(trees[tree]), PYTHONDONTWRITEBYTECODE="1")
            for mode in ("plain", "uncertainty"):
                out = args.out / f"{tree}_{mode}_{r}"
                cmd = [sys.executable, "-m", "autoseg", "predict", "-i", str(inputs), "-o", str(out)]
                cmd += ["-m", str(model), "-c", "3d_fullres", "-f", "0", "--device", "cpu"]
                cmd += ["--uncertainty"] if mode == "uncertainty" else []
                seconds[tree][mode].append(_run(cmd, env, args.out))
    result = {"model": str(model), "inputs": str(inputs), "repeat": args.repeat, "trees": {}}
    for tree in trees:
        med = {mode: statistics.median(v) for mode, v in seconds[tree].items()}
        same = all(
            _same_masks(args.out / f"{tree}_plain_{r}", args.out / f"{tree}_uncertainty_{r}")
            for r in range(args.repeat)
        )
        result["trees"][tree] = {"median_s": med, "runs_s": seconds[tree], "masks_identical": same}
        print(
            f"{tree:>6}: plain {med['plain']:.1f} s, --uncertainty {med['uncertainty']:.1f} s "
            f"(x{med['uncertainty'] / med['plain']:.2f}); masks identical with --uncertainty: {same}"
        )
    this, before = (statistics.median(seconds[t]["uncertainty"]) for t in ("this", "before"))
    print(f"--uncertainty this / before: {this / before:.2f} ({this:.1f} s vs {before:.1f} s)")
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
