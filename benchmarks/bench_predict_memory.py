#!/usr/bin/env python
"""Peak memory of ``autoseg predict`` on one large synthetic CT, beside ``nnUNetv2_predict`` when installed.

The case: a synthetic CT of ``--shape`` voxels (default 600 x 512 x 512, int16, 1.0 x 0.8 x 0.8 mm;
air, a body ellipsoid with noise, a brighter sphere), written as ``.nii.gz``. The model: a
coarse one (a synthetic CT dataset at ``--train-spacing`` mm, planned with ``3d_fullres`` and
trained for ``--train-iterations`` steps), so the network's sliding window is cheap and what is
measured is what a large case costs: reading it, resampling it to the plan's spacing and back,
the class probabilities at full resolution, the mask, writing it.

With ``benchmarks/.nnunet-venv`` (``setup_nnunet.sh``), nnU-Net plans and preprocesses the same
training dataset and gets an untrained fold 0 of the same plan (``bench_predict.make_models``),
and ``nnUNetv2_predict`` segments the same case. Without it, only autoseg runs, and the output
says so.

Peak memory is sampled over the whole process tree (``bench_plan.TreeMemorySampler``: summed RSS
and PSS) and the largest ``ru_maxrss`` of the tool's processes is reported too.

Usage::

    PYTHONPATH=. python benchmarks/bench_predict_memory.py --shape 600 512 512 --threads 2
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
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_plan import TreeMemorySampler  # noqa: E402

CONFIGURATION = "3d_fullres"


def write_ct(path: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float], seed: int) -> Path:
    """A synthetic CT slice by slice (bounded memory): air -1000, body ~40 HU with noise, sphere ~120 HU."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = shape
    volume = np.empty(shape, dtype=np.int16)
    yy, xx = np.mgrid[:y, :x]
    body = ((yy - y / 2) / (0.42 * y)) ** 2 + ((xx - x / 2) / (0.45 * x)) ** 2 <= 1
    for k in range(z):
        plane = np.full((y, x), -1000, dtype=np.float32)
        plane[body] = 40 + rng.normal(0, 20, int(body.sum()))
        r2 = (
            ((k - z / 2) / (0.2 * z)) ** 2
            + ((yy - y / 2) / (0.15 * y)) ** 2
            + ((xx - x / 2) / (0.15 * x)) ** 2
        )
        plane[r2 <= 1] += 80
        volume[k] = plane.astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(tuple(reversed(spacing)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def measured(cmd: list[str], env: dict[str, str], log: Path, interval: float) -> dict[str, Any]:
    """Run ``cmd``; wall and CPU time, peak summed RSS/PSS of its process tree, its ru_maxrss."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        with TreeMemorySampler(process.pid, interval) as sampler:
            _, status, usage = os.wait4(process.pid, 0)  # this process's (and its children's) rusage
            process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
    return {
        "returncode": process.returncode,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_tree_mib": round(sampler.peak_rss_kb / 1024),
        "peak_pss_tree_mib": round(sampler.peak_pss_kb / 1024),
        "ru_maxrss_mib": round(usage.ru_maxrss / 1024),  # the largest single process of the tree
        "log": str(log),
    }


def autoseg_model(dataset: Path, models: Path, iterations: int) -> Path:
    """Plan and briefly train fold 0 of 3d_fullres with autoseg (nnU-Net absent)."""
    env = dict(
        os.environ,
        AUTOSEG_PREPROCESSED=str(models / "autoseg_preprocessed"),
        AUTOSEG_RESULTS=str(models / "autoseg_results"),
    )
    exe = [sys.executable, "-m", "autoseg"]
    subprocess.run(
        [*exe, "plan", str(dataset), "-c", CONFIGURATION, "--num-workers", "1"], env=env, check=True
    )
    train = [*exe, "train", str(dataset), CONFIGURATION, "0", "--device", "cpu", "trainer.epochs=1"]
    train += [f"trainer.iterations_per_epoch={iterations}", "trainer.val_iterations=1"]
    subprocess.run([*train, "trainer.final_validation=false", "trainer.num_workers=0"], env=env, check=True)
    return models / "autoseg_results" / dataset.name


def check_output(mask: Path, image: Path) -> str:
    import SimpleITK as sitk

    a, b = sitk.ReadImage(str(mask)), sitk.ReadImage(str(image))
    same = a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
    return "same size and spacing as the input" if same else f"MISMATCH {a.GetSize()} vs {b.GetSize()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[600, 512, 512], metavar=("Z", "Y", "X"))
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.0, 0.8, 0.8])
    ap.add_argument("--train-spacing", type=float, nargs=3, default=[5.0, 4.0, 4.0])
    ap.add_argument("--train-iterations", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS for both tools")
    ap.add_argument("--mem-interval", type=float, default=0.2)
    ap.add_argument("--nnunet-venv", default=str(HERE / ".nnunet-venv"))
    ap.add_argument("--out", type=Path, default=HERE / "work" / "predict_memory")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()

    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    spec = SyntheticSpec(
        num_cases=5, shape=(24, 32, 32), spacing=tuple(args.train_spacing), modality="ct", classes=1, seed=3
    )
    dataset = generate_dataset(out / "raw" / "Dataset950_MemCT", spec, 1)  # type: ignore[arg-type]
    case = write_ct(out / "input" / "ct_0000.nii.gz", tuple(args.shape), tuple(args.spacing), seed=0)
    nnunet = (Path(args.nnunet_venv) / "bin" / "nnUNetv2_predict").exists()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    results: dict[str, Any] = {"shape": args.shape, "spacing": args.spacing, "threads": args.threads}
    if nnunet:
        import bench_predict

        ns = argparse.Namespace(
            plan_workers=1, nnunet_venv=args.nnunet_venv, train_iterations=args.train_iterations
        )
        models = bench_predict.make_models(ns, dataset, out / "models")
        model = Path(models["autoseg_model"])
        nn_env = {**bench_predict.nnunet_env(models["paths"], Path(models["nnunet_results"])), **env}
        did = int(dataset.name[7:10])
        cmd = [str(Path(args.nnunet_venv) / "bin" / "nnUNetv2_predict"), "-i", str(case.parent)]
        cmd += ["-o", str(out / "nnunet_out"), "-d", str(did), "-c", CONFIGURATION, "-f", "0"]
        cmd += ["-chk", "checkpoint_final.pth", "-device", "cpu", "--disable_tta", "--disable_progress_bar"]
        results["nnunet"] = measured(cmd, nn_env, out / "nnunet.log", args.mem_interval)
        results["nnunet"]["output"] = check_output(out / "nnunet_out" / "ct.nii.gz", case)
    else:
        model = autoseg_model(dataset, out / "models", args.train_iterations)
        results["nnunet"] = "not installed (benchmarks/.nnunet-venv missing): autoseg alone"
    cmd = [sys.executable, "-m", "autoseg", "predict", "-i", str(case.parent), "-o", str(out / "autoseg_out")]
    cmd += ["-m", str(model), "-c", CONFIGURATION, "-f", "0", "--device", "cpu", "--no-tta"]
    results["autoseg"] = measured(cmd, env, out / "autoseg.log", args.mem_interval)
    results["autoseg"]["output"] = check_output(out / "autoseg_out" / "ct.nii.gz", case)
    gib = np.prod(args.shape) * 4 / 2**30
    results["one_float32_copy_gib"] = round(float(gib), 2)
    print(json.dumps(results, indent=2))
    if isinstance(results["nnunet"], dict):
        ratio = results["autoseg"]["peak_pss_tree_mib"] / max(1, results["nnunet"]["peak_pss_tree_mib"])
        print(f"peak PSS autoseg / nnU-Net: {ratio:.2f}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0 if results["autoseg"]["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
