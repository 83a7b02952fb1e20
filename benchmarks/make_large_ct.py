#!/usr/bin/env python
"""A raw dataset of large whole-body-like CTs with many labels, for planning/preprocessing memory.

Each case: ``--shape`` voxels (default 400 x 512 x 512, int16, 1.5 x 0.8 x 0.8 mm) written slab by
slab (bounded memory): air, a body ellipsoid with noise, and ``--classes`` labelled spheres (default
100) on a grid inside the body, each a little brighter than the body, in ``labelsTr``. The layout is
nnU-Net v2's (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``, ``dataset.json``), so both
tools read it (``bench_plan.py --dataset``).

Usage::

    python benchmarks/make_large_ct.py benchmarks/work/raw/Dataset951_LargeCT --cases 4
    python benchmarks/bench_plan.py --dataset benchmarks/work/raw/Dataset951_LargeCT --workers 2 \\
        --kill-at-gib 14 --json-out benchmarks/work/plan_large.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def sphere_centres(shape: tuple[int, int, int], classes: int, rng: np.random.Generator) -> np.ndarray:
    """(classes, 3) sphere centres on a jittered grid inside the body's central box."""
    per_axis = math.ceil(classes ** (1 / 3))
    axes = [np.linspace(0.2 * n, 0.8 * n, per_axis) for n in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)[:classes]
    return grid + rng.uniform(-2, 2, grid.shape)


def write_case(
    image: Path, label: Path, shape: tuple[int, int, int], spacing: tuple, classes: int, seed: int
) -> None:
    """One CT and its label map, slice by slice."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = shape
    centres = sphere_centres(shape, classes, rng)
    radius = 0.35 * min(n / math.ceil(classes ** (1 / 3)) for n in shape)
    volume = np.empty(shape, dtype=np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    yy, xx = np.mgrid[:y, :x]
    body = ((yy - y / 2) / (0.42 * y)) ** 2 + ((xx - x / 2) / (0.45 * x)) ** 2 <= 1
    for k in range(z):
        plane = np.full((y, x), -1000, dtype=np.float32)
        plane[body] = 40 + rng.normal(0, 20, int(body.sum()))
        near = np.flatnonzero(np.abs(centres[:, 0] - k) < radius)
        for c in near:
            r2 = radius**2 - (k - centres[c, 0]) ** 2
            inside = (yy - centres[c, 1]) ** 2 + (xx - centres[c, 2]) ** 2 <= r2
            plane[inside] += 30 + c % 7 * 10
            labels[k][inside] = c + 1
        volume[k] = plane.astype(np.int16)
    for array, path in ((volume, image), (labels, label)):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(tuple(reversed(spacing)))
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(itk, str(path), useCompression=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the dataset folder, e.g. .../Dataset951_LargeCT")
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 512, 512], metavar=("Z", "Y", "X"))
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.5, 0.8, 0.8])
    ap.add_argument("--classes", type=int, default=100, help="labels 1..classes (at most 255)")
    args = ap.parse_args(argv)
    if not 1 <= args.classes <= 255:
        raise SystemExit(f"--classes {args.classes}: choose 1..255 (the label map is uint8)")
    for i in range(args.cases):
        name = f"case_{i:03d}"
        write_case(
            args.folder / "imagesTr" / f"{name}_0000.nii.gz",
            args.folder / "labelsTr" / f"{name}.nii.gz",
            tuple(args.shape),
            tuple(args.spacing),
            args.classes,
            seed=i,
        )
        print(f"wrote {name}", flush=True)
    description = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{f"structure_{k}": k for k in range(1, args.classes + 1)}},
        "numTraining": args.cases,
        "file_ending": ".nii.gz",
        "name": args.folder.name,
    }
    (args.folder / "dataset.json").write_text(json.dumps(description, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
