#!/usr/bin/env python
"""Augmented training samples per second on one worker: autoseg vs nnU-Net v2.

One thread everywhere (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``), like one
data-augmentation worker. Two configurations:

* ``hippo``: the MSD hippocampus 3d_fullres plan (patch 40x56x40), real cases
  (preprocessed with ``autoseg plan`` into ``--out`` when not there yet);
* ``big``: patch 128x128x128 from synthetic 160x288x288 cases (3 labels, blobs).

Measured:

* **nnU-Net**: ``nnUNetTrainer.get_training_transforms`` (nnunetv2 2.8.1,
  batchgeneratorsv2) with nnU-Net's rotation range (±30°), ``mirror_axes=(0, 1, 2)``,
  ``deep_supervision_scales=None``, run in ``benchmarks/.nnunet-venv`` as a subprocess, on
  enlarged crops of nnU-Net's size (``get_patch_size``: 73x80x64 and 205x205x205);
* **autoseg apply**: ``Augmenter.apply`` on the very same crops (same size, in memory);
* **autoseg pipeline**: ``BatchDataset[k]`` divided by the batch size: draw, read the part
  of the crop each sample needs from the memory-mapped case (autoseg's own enlarged crop
  size), augment; i.e. everything a worker does per sample;
* **autoseg apply_batch**: ``Augmenter.apply_batch`` on a CPU batch of crops (per sample).

Crops are drawn by autoseg's ``PatchSampler`` (1/3 forced foreground) and saved once, so
both tools augment identical inputs; nnU-Net's input tensors are copied outside the timer
(its transforms work in place). Reported: mean time per sample over ``--samples`` samples
(the default probabilities make the cost vary a lot between samples, so the mean is what
sets throughput), median of ``--repeat`` runs.

``--torchio`` adds a micro-benchmark of TorchIO's Noise / Blur / Gamma / Flip against the
torch code autoseg uses, on a 128^3 patch.

Usage:
    python benchmarks/bench_augment.py [--configs hippo big] [--repeat 3] [--torchio]
        [--out benchmarks/work/bench_augment] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NNUNET_PYTHON = HERE / ".nnunet-venv" / "bin" / "python"
HIPPO_RAW = REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"

CONFIGS: dict[str, dict[str, Any]] = {
    "hippo": {"patch": (40, 56, 40), "batch_size": 4, "samples": 300, "crops": 24},
    "big": {"patch": (128, 128, 128), "batch_size": 2, "samples": 60, "crops": 6},
}

NNUNET_SCRIPT = r"""
import json, os, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from threadpoolctl import threadpool_limits
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
args = json.loads(sys.argv[1])
patch = tuple(args["patch"])
rot = (-30.0 / 360 * 2 * np.pi, 30.0 / 360 * 2 * np.pi)
if args["mode"] == "crop_size":
    print(json.dumps([int(v) for v in get_patch_size(patch, rot, rot, rot, (0.85, 1.25))]))
    sys.exit(0)
transforms = nnUNetTrainer.get_training_transforms(
    patch, rot, None, (0, 1, 2), False, use_mask_for_norm=[False], is_cascaded=False,
    foreground_labels=args["labels"], regions=None, ignore_label=None)
images = np.load(args["images"], mmap_mode="r")
segs = np.load(args["segs"], mmap_mode="r")
np.random.seed(args["seed"]); torch.manual_seed(args["seed"])
times = []
with threadpool_limits(1), torch.no_grad():
    for i in range(args["samples"] + 3):
        image = torch.from_numpy(np.array(images[i % len(images)]))
        seg = torch.from_numpy(np.array(segs[i % len(segs)]))
        start = time.perf_counter()
        out = transforms(image=image, segmentation=seg)
        if i >= 3:
            times.append(time.perf_counter() - start)
assert tuple(out["image"].shape[1:]) == patch
print(json.dumps(times))
"""


def _run_nnunet(python: Path, args: dict[str, Any]) -> Any:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(NNUNET_SCRIPT)
        script = f.name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "nnUNet_compile": "false"}
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env.setdefault(key, tempfile.gettempdir())
    try:
        out = subprocess.run(
            [str(python), script, json.dumps(args)], check=True, capture_output=True, text=True, env=env
        )
    finally:
        os.unlink(script)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _hippo_cases(out: Path, raw: Path) -> Path:
    folder = out / "hippo_pre" / raw.name / "default" / "3d_fullres"
    if not any(folder.glob("*.json")):
        autoseg = Path(sys.executable).with_name("autoseg")
        cmd = [str(autoseg), "plan", str(raw), f"paths.preprocessed={out / 'hippo_pre'}", "-c", "3d_fullres"]
        subprocess.run(cmd, check=True, capture_output=True)
    return folder


def _big_cases(out: Path, n: int = 3, shape: tuple[int, int, int] = (160, 288, 288)) -> Path:
    from scipy import ndimage

    from autoseg.preprocessing.locations import sample_class_locations
    from autoseg.preprocessing.storage import save_case

    folder = out / "big_pre"
    if len(list(folder.glob("*.json"))) >= n:
        return folder
    for i in range(n):
        rng = np.random.default_rng(i)
        coarse = rng.standard_normal((8, 12, 12)).astype(np.float32)
        image = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape, strict=True)], order=1)
        image += 0.3 * rng.standard_normal(shape).astype(np.float32)
        seg = np.zeros(shape, np.int8)
        grid = np.ogrid[tuple(slice(0, s) for s in shape)]
        for label in (1, 2, 1, 2):
            center = [rng.uniform(0.2, 0.8) * s for s in shape]
            radii = [rng.uniform(0.05, 0.15) * s for s in shape]
            inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True)) < 1
            seg[inside] = label
            image[inside] += label
        image = (image - image.mean()) / image.std()
        locations = sample_class_locations(seg, [1, 2], seed=1234)
        save_case(folder, f"case_{i:03d}", image[None], seg, {"case": f"case_{i:03d}"}, locations, "bench")
    return folder


def _prepare(name: str, folder: Path, crop: tuple[int, ...], out: Path, count: int) -> tuple[Path, Path]:
    from autoseg.data import PatchSampler, PreprocessedCases

    images_path, segs_path = out / f"{name}_crops_image.npy", out / f"{name}_crops_seg.npy"
    names = sorted(p.stem for p in folder.glob("*.json"))
    sampler = PatchSampler(PreprocessedCases(folder, names), CONFIGS[name]["patch"], 3, crop_size=crop)
    rng = np.random.default_rng(0)
    specs = [s for _ in range((count + 2) // 3) for s in sampler.draw(rng)][:count]
    crops = [sampler.crop(s) for s in specs]
    np.save(images_path, np.stack([c[0] for c in crops]))
    np.save(segs_path, np.stack([c[1] for c in crops]).astype(np.int16))
    return images_path, segs_path


def _time_apply(
    patch: tuple[int, ...], images: np.ndarray, segs: np.ndarray, samples: int, seed: int
) -> float:
    from autoseg.data import Augmenter

    aug = Augmenter(patch, num_channels=images.shape[1])
    rng = np.random.default_rng(seed)
    image_t = [torch.from_numpy(np.array(i)) for i in images]
    seg_t = [torch.from_numpy(np.array(s)) for s in segs]
    times = []
    for i in range(samples + 3):
        params = aug.draw(rng)
        start = time.perf_counter()
        aug.apply(image_t[i % len(image_t)], seg_t[i % len(seg_t)], params)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.fmean(times)


def _time_apply_batch(
    patch: tuple[int, ...], images: np.ndarray, segs: np.ndarray, bs: int, seed: int
) -> float:
    from autoseg.data import Augmenter

    aug = Augmenter(patch, num_channels=images.shape[1])
    rng = np.random.default_rng(seed)
    n = max(1, len(images) // bs)
    times = []
    for i in range(max(8, 2 * n) + 1):
        idx = [(i * bs + j) % len(images) for j in range(bs)]
        batch_i, batch_s = torch.from_numpy(images[idx]), torch.from_numpy(segs[idx])
        params = [aug.draw(rng) for _ in idx]
        start = time.perf_counter()
        aug.apply_batch(batch_i, batch_s, params)
        if i >= 1:
            times.append((time.perf_counter() - start) / bs)
    return statistics.fmean(times)


def _time_pipeline(name: str, folder: Path, samples: int, seed: int) -> tuple[float, tuple[int, ...]]:
    from autoseg.data import Augmenter, BatchDataset, PatchSampler, PreprocessedCases

    patch, bs = CONFIGS[name]["patch"], CONFIGS[name]["batch_size"]
    names = sorted(p.stem for p in folder.glob("*.json"))
    cases = PreprocessedCases(folder, names)
    aug = Augmenter(patch, num_channels=cases.num_channels)
    dataset = BatchDataset(PatchSampler(cases, patch, bs, crop_size=aug.crop_size), aug, seed)
    dataset[0]
    times = []
    for k in range(1, samples // bs + 2):
        start = time.perf_counter()
        dataset[k]
        times.append((time.perf_counter() - start) / bs)
    return statistics.fmean(times), aug.crop_size


def _torchio_micro(repeat: int) -> list[tuple[str, float, float]]:
    import torchio as tio

    from autoseg.data import intensity

    x = torch.randn(1, 128, 128, 128)

    def timed(fn: Any) -> float:
        fn()
        ts = []
        for _ in range(max(5, repeat)):
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
        return statistics.median(ts) * 1e3

    def subject() -> tio.Subject:
        return tio.Subject(image=tio.ScalarImage(tensor=x.clone()))

    rows = [
        (
            "noise std 0.05",
            timed(lambda: tio.Noise(0.0, 0.05, seed=1)(subject())),
            timed(lambda: intensity.add_noise_(x.clone(), 0.05, 1)),
        ),
        (
            "blur sigma 0.75",
            timed(lambda: tio.Blur((0.75, 0.75, 0.75))(subject())),
            timed(lambda: intensity.gaussian_blur(x[0], (0.75, 0.75, 0.75))),
        ),
        (
            "gamma 1.2 (torchio: plain power)",
            timed(lambda: tio.Gamma(1.2)(subject())),
            timed(lambda: intensity.gamma_(x[0].clone(), 1.2, invert=False)),
        ),
        (
            "flip 3 axes",
            timed(lambda: tio.Flip((0, 1, 2))(subject())),
            timed(lambda: torch.flip(x, (1, 2, 3))),
        ),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=HERE / "work" / "bench_augment")
    parser.add_argument("--hippo-raw", type=Path, default=HIPPO_RAW)
    parser.add_argument("--nnunet-python", type=Path, default=NNUNET_PYTHON)
    parser.add_argument(
        "--samples", type=int, default=None, help="samples per measurement (default per config)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--torchio", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the saved crops")
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"torch": torch.__version__, "configs": {}}
    for name in args.configs:
        cfg = CONFIGS[name]
        patch, samples = cfg["patch"], args.samples or cfg["samples"]
        folder = _hippo_cases(args.out, args.hippo_raw) if name == "hippo" else _big_cases(args.out)
        crop = tuple(_run_nnunet(args.nnunet_python, {"mode": "crop_size", "patch": patch}))
        images_path, segs_path = _prepare(name, folder, crop, args.out, cfg["crops"])
        images, segs = np.load(images_path), np.load(segs_path)
        runs: dict[str, list[float]] = {"nnunet": [], "apply": [], "pipeline": [], "apply_batch": []}
        own_crop: tuple[int, ...] = crop
        for r in range(args.repeat):
            nn_args = {
                "mode": "time",
                "patch": patch,
                "images": str(images_path),
                "segs": str(segs_path),
                "samples": samples,
                "seed": r,
                "labels": [1, 2],
            }
            runs["nnunet"].append(statistics.fmean(_run_nnunet(args.nnunet_python, nn_args)))
            runs["apply"].append(_time_apply(patch, images, segs, samples, r))
            pipeline, own_crop = _time_pipeline(name, folder, samples, r)
            runs["pipeline"].append(pipeline)
            runs["apply_batch"].append(_time_apply_batch(patch, images, segs, cfg["batch_size"], r))
            print(
                f"{name} run {r}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in runs.items()),
                flush=True,
            )
        med = {k: statistics.median(v) for k, v in runs.items()}
        results["configs"][name] = {
            "patch": patch,
            "nnunet_crop": crop,
            "autoseg_crop": own_crop,
            "samples": samples,
            "ms_per_sample": {k: v * 1e3 for k, v in med.items()},
            "runs_ms": {k: [x * 1e3 for x in v] for k, v in runs.items()},
        }
        if not args.keep:
            images_path.unlink()
            segs_path.unlink()

    print("\n| patch (crop) | what | ms / sample | samples / s | vs nnU-Net |")
    print("|---|---|---:|---:|---:|")
    labels = {
        "nnunet": "nnU-Net get_training_transforms",
        "apply": "autoseg Augmenter.apply (same crops)",
        "pipeline": "autoseg BatchDataset (read + augment)",
        "apply_batch": "autoseg apply_batch, CPU",
    }
    for res in results["configs"].values():
        ms = res["ms_per_sample"]
        for key, label in labels.items():
            crop = res["autoseg_crop"] if key == "pipeline" else res["nnunet_crop"]
            size = f"{'x'.join(map(str, res['patch']))} ({'x'.join(map(str, crop))})"
            print(
                f"| {size} | {label} | {ms[key]:.1f} | {1e3 / ms[key]:.1f} | {ms['nnunet'] / ms[key]:.2f}x |"
            )
    if args.torchio:
        rows = _torchio_micro(args.repeat)
        results["torchio_ms"] = {name: {"torchio": a, "autoseg": b} for name, a, b in rows}
        print("\n| 128^3, one channel | TorchIO [ms] | autoseg torch [ms] |")
        print("|---|---:|---:|")
        for name, a, b in rows:
            print(f"| {name} | {a:.1f} | {b:.1f} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
