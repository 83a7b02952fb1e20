"""``autoseg demo``: synthetic data -> plan -> short training -> predict with uncertainty -> evaluate
-> report, on the CPU in a few minutes.

The task: MR-like bodies holding two structures of different size and contrast (a small bright
one and a larger, fainter one, :data:`DEMO_TASK`). The model: the demo planner preset (a U-Net
of 8 -> 32 features, conf/planner/demo.yaml) and the demo trainer (conf/trainer/demo.yaml), small
enough to train on two CPU cores in minutes (README: The demo).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: The demo's synthetic task (see :class:`autoseg.synthetic.dataset.SyntheticSpec`).
DEMO_TASK: dict[str, Any] = {
    "shape": (24, 40, 40),
    "classes": 2,
    "class_scale": (1.2, 1.8),  # class 1: small and bright (+0.30); class 2: larger and fainter (-0.22)
    "distractors": False,
    "name": "Demo",
}


def _demo_heldout(raw: Path, num_cases: int, num_workers: int | None) -> tuple[Path, Path]:
    """Held-out cases (another seed) as the dataset's imagesTs/labelsTs."""
    import shutil

    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    spare = generate_dataset(
        raw.parent / ".heldout", SyntheticSpec(num_cases=num_cases, seed=1000, **DEMO_TASK), num_workers
    )
    for kind in ("images", "labels"):
        target = raw / f"{kind}Ts"
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(spare / f"{kind}Tr"), target)
    shutil.rmtree(spare)
    return raw / "imagesTs", raw / "labelsTs"


def _steps(args: argparse.Namespace, out: Path, raw: Path, images_ts: Path, labels_ts: Path) -> list:
    workers = [] if args.num_workers is None else ["--num-workers", str(args.num_workers)]
    roots = [f"paths.preprocessed={out / 'preprocessed'}", f"paths.results={out / 'results'}"]
    model = out / "results" / raw.name
    predictions = out / "predictions"
    fast = ["-c", "3d_fullres", "-f", "0", "--png", "--uncertainty", "--device", "cpu"]
    train = ["train", str(raw), "3d_fullres", "0", *roots, "--trainer", "demo", "--plans-name", "demo"]
    return [
        ("plan", ["plan", str(raw), *roots, "-c", "3d_fullres", "--preset", "demo", "--explain", *workers]),
        (
            "[3/6] autoseg train 3d_fullres fold 0, demo trainer (30 epochs x 25 iterations), CPU:",
            [*train, "--device", "cpu"],
        ),
        (
            "[4/6] autoseg predict the held-out cases with uncertainty maps (fold 0, TTA mirrors):",
            ["predict", "-i", str(images_ts), "-o", str(predictions), "-m", str(model), *fast],
        ),
        (
            "[5/6] autoseg evaluate against the held-out labels:",
            ["evaluate", str(predictions), str(labels_ts), "-o", str(predictions / "summary.json")],
        ),
        (
            "[6/6] autoseg report (one self-contained HTML page):",
            ["report", str(raw), *roots, "--plans-name", "demo", "-o", str(out / "report.html")],
        ),
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic dataset -> plan -> training -> predict held-out cases -> evaluate -> report."""
    import json
    import time

    from autoseg.commands.dispatch import run
    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    start = time.perf_counter()
    out = Path(args.out).resolve()
    raw = generate_dataset(
        out / "raw" / "Dataset900_Demo", SyntheticSpec(num_cases=10, seed=0, **DEMO_TASK), args.num_workers
    )
    images_ts, labels_ts = _demo_heldout(raw, 3, args.num_workers)
    print(
        "[1/6] synthetic dataset of 10 MR-like cases, a small bright and a large faint class, "
        f"3 held out: {raw}"
    )
    print("[2/6] autoseg plan (validate, fingerprint, plan with the demo preset, preprocess):")
    for i, (title, argv) in enumerate(_steps(args, out, raw, images_ts, labels_ts)):
        if i:
            print(title)
        code = run(argv)
        if code != 0:
            return code
    predictions = out / "predictions"
    summary = json.loads((predictions / "summary.json").read_text())
    dice = {name: round(m["dice"], 4) for name, m in summary["mean"].items() if m["dice"] is not None}
    print(f"held-out Dice per class: {dice}")
    print(f"open the report: {out / 'report.html'} (Markdown: {out / 'report.md'})")
    print(f"uncertainty maps: {predictions / 'uncertainty'}/<case>_entropy.nii.gz and _disagreement.nii.gz")
    for png in sorted(predictions.glob("*.png")):
        print(f"overlay: {png}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s; everything is under {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``autoseg`` parser."""
    p = sub.add_parser(
        "demo", help="synthetic data -> plan -> short training -> predict -> evaluate -> report, on the CPU"
    )
    p.add_argument("--out", default="demo_out")
    p.add_argument("--num-workers", type=int, default=None)
    p.set_defaults(func=cmd_demo)
