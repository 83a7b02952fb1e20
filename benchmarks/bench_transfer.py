#!/usr/bin/env python
"""Starting from a model beside training from scratch, on real data with another label set.

Data: the 100 real hippocampus cases of ``../shared/data/Dataset004_Hippocampus`` (MSD Task04
subset; labels anterior 1, posterior 2), split by case number into two datasets written under
``--work``:

* **source** ``Dataset601_HippoSource``: the first ``--source-cases`` cases with both labels;
  a model is trained on them (fold 0: all but 6 of them) with ``--source-epochs`` epochs;
* **target** ``Dataset602_HippoWhole``: the other cases, with **another label set**: the two
  labels merged into one ``hippocampus`` label (value 1). Fold 0 trains on the first
  ``--train-cases`` of them and is validated (held out) on all the others.

The target is planned with ``autoseg plan TARGET --plans-from SOURCE`` (the source's network,
patch, spacing and batch; the target's intensities and labels), once, and every target run uses
that plan, the same seed and the same cases. For each budget (``--budgets``, in epochs of
``--iterations`` steps):

* ``scratch``: ``autoseg train TARGET 3d_fullres 0 --trainer demo trainer.epochs=B``;
* ``init-from``: the same with ``--init-from <source fold_0>`` (same schedule: the only
  difference is the initial weights);
* ``init-from + finetune``: ``--init-from`` with ``--trainer finetune`` settings at the same
  budget (warm-up of ``--warmup`` epochs, start lr ``--finetune-lr``).

The held-out Dice is the final validation of fold 0 (sliding window, ``checkpoint_final``) over
the held-out target cases: ``validation/summary.json`` ``foreground_mean``. Results are printed as
a Markdown table (and written to ``--json-out``).

The network is the demo preset's narrow U-Net (``--preset demo``: 8 -> 32 features) on the CPU,
so that the whole benchmark fits a shared 2-core machine; the data loaders run in the training
process's one worker (``--workers``).

Usage::

    .venv/bin/python benchmarks/bench_transfer.py [--work benchmarks/.transfer_work] \
        [--source-epochs 20] [--budgets 3,10] [--iterations 25] [--train-cases 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "Dataset004_Hippocampus"
SOURCE, TARGET = "Dataset601_HippoSource", "Dataset602_HippoWhole"


def _write_dataset(out: Path, cases: list[str], merge: bool, raw: Path) -> None:
    """A raw dataset of ``cases`` (images copied, labels copied or merged into one label)."""
    import SimpleITK as sitk

    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case in cases:
        image = out / "imagesTr" / f"{case}_0000.nii.gz"
        if not image.exists():
            shutil.copyfile(raw / "imagesTr" / f"{case}_0000.nii.gz", image)
        label = out / "labelsTr" / f"{case}.nii.gz"
        if not label.exists():
            seg = sitk.ReadImage(str(raw / "labelsTr" / f"{case}.nii.gz"))
            if merge:
                seg = sitk.Cast(seg > 0, seg.GetPixelID())
            sitk.WriteImage(seg, str(label))
    labels = (
        {"background": 0, "hippocampus": 1} if merge else {"background": 0, "Anterior": 1, "Posterior": 2}
    )
    description = {
        "channel_names": {"0": "MRI"},
        "labels": labels,
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "name": out.name,
    }
    (out / "dataset.json").write_text(json.dumps(description, indent=2))


def _splits(out: Path, train: list[str], val: list[str]) -> None:
    (out / "splits.json").write_text(json.dumps([{"train": train, "val": val}], indent=2))


def _autoseg(env: dict[str, str], *argv: str) -> float:
    """Run ``autoseg argv`` (its output to the terminal); the wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autoseg", *argv], env=env, check=True)
    return time.perf_counter() - start


def _held_out(results: Path) -> float:
    summary = results / TARGET / "demo" / "3d_fullres" / "fold_0" / "validation" / "summary.json"
    return float(json.loads(summary.read_text())["foreground_mean"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / ".transfer_work")
    ap.add_argument("--source-cases", type=int, default=60)
    ap.add_argument("--source-epochs", type=int, default=20)
    ap.add_argument("--train-cases", type=int, default=6)
    ap.add_argument("--budgets", default="3,10", help="target training budgets in epochs, comma-separated")
    ap.add_argument("--iterations", type=int, default=25, help="training steps per epoch")
    ap.add_argument("--warmup", type=int, default=1, help="finetune: warm-up epochs")
    ap.add_argument("--finetune-lr", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared machine more threads were 7x slower)",
    )
    ap.add_argument("--workers", type=int, default=1, help="data-loading processes per training")
    ap.add_argument(
        "--patch",
        default="24,32,24",
        help="training patch of every run (trainer.patch_size; '' keeps the plan's)",
    )
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    if not (args.data / "dataset.json").is_file():
        print(f"{args.data}: the real hippocampus data is absent; nothing to measure", file=sys.stderr)
        return 2
    work = args.work.resolve()
    env = {
        **os.environ,
        "AUTOSEG_RAW": str(work / "raw"),
        "AUTOSEG_PREPROCESSED": str(work / "pre"),
        "AUTOSEG_RESULTS": str(work / "results"),
        "OMP_NUM_THREADS": str(args.threads),
    }
    cases = sorted(p.name.removesuffix(".nii.gz") for p in (args.data / "labelsTr").glob("*.nii.gz"))
    source_cases, target_cases = cases[: args.source_cases], cases[args.source_cases :]
    _write_dataset(work / "raw" / SOURCE, source_cases, merge=False, raw=args.data)
    _splits(work / "raw" / SOURCE, source_cases[:-6], source_cases[-6:])
    _write_dataset(work / "raw" / TARGET, target_cases, merge=True, raw=args.data)
    train, held_out = target_cases[: args.train_cases], target_cases[args.train_cases :]
    _splits(work / "raw" / TARGET, train, held_out)
    common = [
        "--device",
        "cpu",
        f"trainer.num_workers={args.workers}",
        f"trainer.iterations_per_epoch={args.iterations}",
    ]
    common += [f"trainer.patch_size=[{args.patch}]"] if args.patch else []
    common += [
        f"trainer.seed={args.seed}",
        "trainer.save_probabilities=false",
        "trainer.validation_png=false",
    ]
    source_fold = work / "results" / SOURCE / "demo" / "3d_fullres" / "fold_0"
    times: dict[str, float] = {}
    if not (source_fold / "checkpoint_final.pt").is_file():
        _autoseg(env, "plan", SOURCE, "--preset", "demo", "-c", "3d_fullres", "--num-workers", "2")
        times["source"] = _autoseg(
            env, "train", SOURCE, "3d_fullres", "0", "--plans-name", "demo", "--trainer", "demo",
            f"trainer.epochs={args.source_epochs}", *common,
        )  # fmt: skip
    source_dice = float(
        json.loads((source_fold / "validation" / "summary.json").read_text())["foreground_mean"]
    )
    _autoseg(
        env, "plan", TARGET, "--preset", "demo", "-c", "3d_fullres", "--num-workers", "2",
        "--plans-from", str(work / "results" / SOURCE), "--explain",
    )  # fmt: skip
    rows = []
    for budget in [int(b) for b in args.budgets.split(",")]:
        runs = {
            "scratch": ["--trainer", "demo"],
            "init-from": ["--trainer", "demo", "--init-from", str(source_fold)],
            "init-from + finetune": [
                "--trainer", "demo", "--init-from", str(source_fold),
                f"trainer.warmup_epochs={min(args.warmup, budget - 1)}", f"trainer.lr={args.finetune_lr}",
            ],
        }  # fmt: skip
        row: dict[str, float | int] = {"budget_epochs": budget, "steps": budget * args.iterations}
        rows.append(row)
        for name, extra in runs.items():
            results = work / f"results_b{budget}_{name.replace(' + ', '_').replace('-', '_')}"
            seconds = _autoseg(
                {**env, "AUTOSEG_RESULTS": str(results)}, "train", TARGET, "3d_fullres", "0",
                "--plans-name", "demo", *extra, f"trainer.epochs={budget}", *common,
            )  # fmt: skip
            row[name] = _held_out(results)
            row[f"{name} s"] = round(seconds, 1)
            print(json.dumps(row), flush=True)
    _print_table(rows, source_dice, args, len(held_out))
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "source_dice": source_dice, **times}, indent=2))
    return 0


def _print_table(rows: list[dict], source_dice: float, args: argparse.Namespace, n_held_out: int) -> None:
    print(
        f"\nsource: {args.source_cases} cases (both labels), {args.source_epochs} x {args.iterations} steps, "
        f"its own validation Dice {source_dice:.3f}; target: labels merged into one, {args.train_cases} "
        f"training cases, {n_held_out} held out\n"
    )
    print("| budget (epochs x steps) | scratch | init-from | margin | init-from + finetune | margin |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        a, b, c = r["scratch"], r["init-from"], r["init-from + finetune"]
        print(
            f"| {r['budget_epochs']} x {args.iterations} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {c:.3f} "
            f"| {c - a:+.3f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
