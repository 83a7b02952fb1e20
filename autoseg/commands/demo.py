"""``autoseg demo``: synthetic data -> plan -> short training -> predict -> evaluate -> pictures (CPU)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _demo_heldout(raw: Path, num_cases: int, num_workers: int | None) -> tuple[Path, Path]:
    """Held-out cases (another seed) as the dataset's imagesTs/labelsTs."""
    import shutil

    from autoseg.synthetic import SyntheticSpec, generate_dataset

    spare = generate_dataset(
        raw.parent / ".heldout", SyntheticSpec(num_cases=num_cases, seed=1000, distractors=False), num_workers
    )
    for kind in ("images", "labels"):
        target = raw / f"{kind}Ts"
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(spare / f"{kind}Tr"), target)
    shutil.rmtree(spare)
    return raw / "imagesTs", raw / "labelsTs"


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic dataset -> plan -> short training -> predict held-out cases -> evaluate -> pictures."""
    import json

    from autoseg.commands.dispatch import run
    from autoseg.synthetic import SyntheticSpec, generate_dataset

    out = Path(args.out).resolve()
    workers = [] if args.num_workers is None else ["--num-workers", str(args.num_workers)]
    raw = generate_dataset(
        out / "raw" / "Dataset900_Demo",
        SyntheticSpec(num_cases=10, seed=0, distractors=False),
        args.num_workers,
    )
    images_ts, labels_ts = _demo_heldout(raw, 3, args.num_workers)
    roots = [f"paths.preprocessed={out / 'preprocessed'}", f"paths.results={out / 'results'}"]
    longer = ["trainer.epochs=10"]  # the quick trainer's 5 x 20 iterations learn only the larger class
    print(f"[1/5] synthetic dataset of 10 MR-like cases with 2 classes, 3 held out: {raw}")
    print("[2/5] autoseg plan (validate, fingerprint, plan, preprocess):")
    steps: list[tuple[str, list[str]]] = [
        ("plan", ["plan", str(raw), *roots, "-c", "3d_fullres", "--explain", *workers]),
        (
            "[3/5] autoseg train 3d_fullres fold 0 with the quick trainer, 10 epochs x 20 iterations, CPU:",
            ["train", str(raw), "3d_fullres", "0", *roots, "--trainer", "quick", "--device", "cpu", *longer],
        ),
    ]
    model = out / "results" / raw.name
    predictions = out / "predictions"
    fast = ["-c", "3d_fullres", "-f", "0", "--png", "--device", "cpu"]
    steps += [
        (
            "[4/5] autoseg predict on the held-out cases (masks in their own geometry, overlay PNGs):",
            [*("predict", "-i", str(images_ts), "-o", str(predictions), "-m", str(model)), *fast],
        ),
        (
            "[5/5] autoseg evaluate against the held-out labels:",
            ["evaluate", str(predictions), str(labels_ts), "-o", str(predictions / "summary.json")],
        ),
    ]
    for i, (title, argv) in enumerate(steps):
        if i:
            print(title)
        code = run(argv)
        if code != 0:
            return code
    summary = json.loads((predictions / "summary.json").read_text())
    dice = {name: round(m["dice"], 4) for name, m in summary["mean"].items() if m["dice"] is not None}
    fold = model / "default" / "3d_fullres" / "fold_0"
    print(f"held-out Dice per class: {dice}")
    print(f"pictures: training curves {fold / 'progress.png'}")
    for png in sorted(predictions.glob("*.png")):
        print(f"          overlay {png}")
    print(f"demo finished; everything is under {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``autoseg`` parser."""
    p = sub.add_parser(
        "demo", help="synthetic data -> plan -> short training -> predict -> evaluate -> pictures, on the CPU"
    )
    p.add_argument("--out", default="demo_out")
    p.add_argument("--num-workers", type=int, default=None)
    p.set_defaults(func=cmd_demo)
