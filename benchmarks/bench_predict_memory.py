#!/usr/bin/env python
"""Peak memory of ``autoseg predict`` on one large synthetic CT, beside ``nnUNetv2_predict`` when installed.

The case: a synthetic whole-body-like CT of ``--shape`` voxels (default 400 x 512 x 512, int16,
1.5 x 0.8 x 0.8 mm; air, a body ellipsoid with noise, a brighter sphere), written as ``.nii.gz``.
The model: a coarse one with ``--classes`` labels (default 100; a synthetic CT dataset from
``autoseg.synthetic`` at ``--train-spacing`` mm, planned with ``3d_fullres`` and trained for
``--train-iterations`` steps), so the network's sliding window is cheap and what is measured is
what a large many-class case costs: reading it, resampling it to the plan's spacing, the class
probabilities back at full resolution (101 x the volume: 42 GB as float32 for the default case),
the mask, writing it. No TTA, fold 0.

With ``benchmarks/.nnunet-venv`` (``setup_nnunet.sh``), nnU-Net plans and preprocesses the same
training dataset and gets an untrained fold 0 of the same plan (``bench_predict.make_models``),
and ``nnUNetv2_predict`` segments the same case. Without it, only autoseg runs, and the output
says so.

Peak memory is sampled over the whole process tree (``bench_plan.TreeMemorySampler``: summed RSS
and PSS) and the largest ``ru_maxrss`` of the tool's processes is reported too. A watchdog kills a
tool whose tree passes ``--kill-at-gib`` (default 14) or when the machine's available memory falls
under 2 GiB, and reports the peak it had reached (``killed``), so that a run never swaps a shared
machine. ``--only autoseg`` skips nnU-Net (the CI smoke run: tests/benchmarks).

Usage::

    PYTHONPATH=. python benchmarks/bench_predict_memory.py --threads 2 --json-out benchmarks/work/pm.json
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


def measured(
    cmd: list[str], env: dict[str, str], log: Path, interval: float, kill_above_gib: float | None = None
) -> dict[str, Any]:
    """Run ``cmd``; wall and CPU time, peak summed RSS/PSS of its process tree, its ru_maxrss.

    With ``kill_above_gib`` a watchdog kills the tree when its summed RSS passes that many GiB (or the
    machine runs short of memory), and the result says so (``killed``) with the peak reached before.
    """
    limit = None if kill_above_gib is None else int(kill_above_gib * 2**20)
    with open(log, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        with TreeMemorySampler(process.pid, interval, kill_above_kb=limit) as sampler:
            _, status, usage = os.wait4(process.pid, 0)  # this process's (and its children's) rusage
            process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
    result = {
        "returncode": process.returncode,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_tree_mib": round(sampler.peak_rss_kb / 1024),
        "peak_pss_tree_mib": round(sampler.peak_pss_kb / 1024),
        "ru_maxrss_mib": round(usage.ru_maxrss / 1024),  # the largest single process of the tree
        "log": str(log),
    }
    if sampler.killed:
        result["killed"] = f"killed by the benchmark's watchdog: {sampler.killed}"
    elif process.returncode in (-9, 137):
        result["killed"] = "killed (SIGKILL: the kernel's out-of-memory killer?)"
    return result


def autoseg_model(dataset: Path, models: Path, iterations: int) -> Path:
    """Plan and briefly train fold 0 of 3d_fullres with autoseg (nnU-Net absent, or ``--only autoseg``)."""
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 512, 512], metavar=("Z", "Y", "X"))
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.5, 0.8, 0.8])
    ap.add_argument("--classes", type=int, default=100, help="foreground labels of the model (1..100)")
    ap.add_argument("--train-shape", type=int, nargs=3, default=[40, 64, 64], metavar=("Z", "Y", "X"))
    ap.add_argument("--train-spacing", type=float, nargs=3, default=[5.0, 4.0, 4.0])
    ap.add_argument("--train-iterations", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS for both tools")
    ap.add_argument("--mem-interval", type=float, default=0.2)
    ap.add_argument(
        "--kill-at-gib", type=float, default=14.0, help="watchdog: kill a tool whose tree passes this (GiB)"
    )
    ap.add_argument("--only", choices=("both", "autoseg"), default="both")
    ap.add_argument("--nnunet-venv", default=str(HERE / ".nnunet-venv"))
    ap.add_argument("--out", type=Path, default=HERE / "work" / "predict_memory")
    ap.add_argument("--json-out", type=Path, default=None)
    return ap.parse_args(argv)


def models_namespace(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments ``bench_predict.make_models`` (and ``bench_train.prepare``) read: both tools plan
    the training set with one worker, autoseg trains fold 0 (no ready model), nnU-Net gets its fold 0."""
    return argparse.Namespace(
        plan_workers=1,
        nnunet_venv=args.nnunet_venv,
        train_iterations=args.train_iterations,
        autoseg_model=None,
        with_nnunet=True,
    )


def nnunet_side(
    args: argparse.Namespace, dataset: Path, case: Path, out: Path, env: dict
) -> tuple[Path, dict]:
    """Both tools plan the training set; autoseg trains fold 0, nnU-Net gets an untrained fold 0 of its
    plan (``bench_predict.make_models``); then ``nnUNetv2_predict`` segments the case, measured."""
    import bench_predict

    models = bench_predict.make_models(models_namespace(args), dataset, out / "models")
    nn_env = {**bench_predict.nnunet_env(models["paths"], Path(models["nnunet_results"])), **env}
    did = int(dataset.name[7:10])
    cmd = [str(Path(args.nnunet_venv) / "bin" / "nnUNetv2_predict"), "-i", str(case.parent)]
    cmd += ["-o", str(out / "nnunet_out"), "-d", str(did), "-c", CONFIGURATION, "-f", "0"]
    cmd += ["-chk", "checkpoint_final.pth", "-device", "cpu", "--disable_tta", "--disable_progress_bar"]
    result = measured(cmd, nn_env, out / "nnunet.log", args.mem_interval, args.kill_at_gib)
    mask = out / "nnunet_out" / "ct.nii.gz"
    result["output"] = check_output(mask, case) if mask.is_file() else "no mask written"
    return Path(models["autoseg_model"]), result


def autoseg_side(args: argparse.Namespace, model: Path, case: Path, out: Path, env: dict) -> dict[str, Any]:
    """``autoseg predict`` of the case, measured; its memory record and export seconds from predict.json."""
    cmd = [sys.executable, "-m", "autoseg", "predict", "-i", str(case.parent), "-o", str(out / "autoseg_out")]
    cmd += ["-m", str(model), "-c", CONFIGURATION, "-f", "0", "--device", "cpu", "--no-tta"]
    result = measured(cmd, env, out / "autoseg.log", args.mem_interval, args.kill_at_gib)
    mask = out / "autoseg_out" / "ct.nii.gz"
    result["output"] = check_output(mask, case) if mask.is_file() else "no mask written"
    record = out / "autoseg_out" / "predict.json"
    if record.is_file():
        summary = json.loads(record.read_text())
        result["predict_json_memory"] = summary.get("memory")
        result["export_s"] = [c.get("export_s") for c in summary.get("cases", [])]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    spec = SyntheticSpec(
        num_cases=5,
        shape=tuple(args.train_shape),  # type: ignore[arg-type]
        spacing=tuple(args.train_spacing),  # type: ignore[arg-type]
        modality="ct",
        classes=args.classes,
        seed=3,
        distractors=False,
    )
    dataset = generate_dataset(out / "raw" / "Dataset950_MemCT", spec, 1)
    case = write_ct(out / "input" / "ct_0000.nii.gz", tuple(args.shape), tuple(args.spacing), seed=0)
    nnunet = args.only == "both" and (Path(args.nnunet_venv) / "bin" / "nnUNetv2_predict").exists()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    results: dict[str, Any] = {
        "shape": args.shape,
        "spacing": args.spacing,
        "classes": args.classes,
        "threads": args.threads,
        "kill_at_gib": args.kill_at_gib,
    }
    if nnunet:
        model, results["nnunet"] = nnunet_side(args, dataset, case, out, env)
    else:
        model = autoseg_model(dataset, out / "models", args.train_iterations)
        why = (
            "--only autoseg" if args.only == "autoseg" else "not installed (benchmarks/.nnunet-venv missing)"
        )
        results["nnunet"] = f"{why}: autoseg alone"
    results["autoseg"] = autoseg_side(args, model, case, out, env)
    voxels = float(np.prod(args.shape))
    results["one_float32_copy_gib"] = round(voxels * 4 / 2**30, 2)
    results["native_probabilities_gib"] = round(voxels * 4 * (args.classes + 1) / 2**30, 1)
    print(json.dumps(results, indent=2))
    if isinstance(results["nnunet"], dict):
        for key in ("peak_pss_tree_mib", "peak_rss_tree_mib", "wall_s"):
            ratio = results["autoseg"][key] / max(1, results["nnunet"][key])
            print(
                f"{key} autoseg / nnU-Net: {ratio:.2f}"
                + (" (nnU-Net killed)" if "killed" in results["nnunet"] else "")
            )
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0 if results["autoseg"]["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
