#!/usr/bin/env python
"""Seconds per case for ``autoseg predict`` beside ``nnUNetv2_predict``: same network, fold, TTA, device.

Models (not timed), from the same raw dataset:

* **autoseg**: ``autoseg plan DATASET -c 3d_fullres`` into a fresh ``AUTOSEG_PREPROCESSED``, then
  ``autoseg train DATASET 3d_fullres 0 trainer.epochs=1 trainer.iterations_per_epoch=2
  trainer.val_iterations=1 trainer.final_validation=false trainer.num_workers=0 --device cpu``
  (``--train-iterations``): a real ``fold_0/checkpoint_final.pt`` after two SGD steps;
* **nnU-Net**: ``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres -np 2 -npfp 2`` into a fresh
  ``nnUNet_preprocessed`` (``bench_train.prepare``), then, in ``benchmarks/.nnunet-venv`` (this file
  with ``--worker nnunet_checkpoint``): ``nnUNetTrainer(plans, '3d_fullres', 0, dataset_json)``,
  ``initialize()``, ``configure_rotation_dummyDA_mirroring_and_inital_patch_size()`` (it sets the
  ``inference_allowed_mirroring_axes`` the checkpoint stores; left ``None``, nnUNetv2_predict would
  silently skip TTA) and ``save_checkpoint(fold_0/checkpoint_final.pth)`` without training, plus the
  ``plans.json``, ``dataset.json`` and ``dataset_fingerprint.json`` that ``on_train_start`` copies
  next to the folds (what ``nnUNetPredictor.initialize_from_trained_model_folder`` reads). The
  script stops unless both checkpoints hold the same mirror axes ((0, 1, 2) on Hippocampus).

Both networks are therefore (nearly) untrained: their masks are meaningless and differ between the
tools, but a CPU forward pass costs the same whatever the weights, so the timing is fair. The
masks are still checked: every input case must have an output with the input's size, spacing,
origin and direction, and label values from the dataset's labels.

Timed runs, each a fresh process, in one run of this script; the input is the first ``--cases``
N images of ``imagesTr`` (sorted by name) copied into ``input/``, the first K (``--base-cases``,
default 3) into ``input_base/`` and the first one into ``input_1/``:

* ``nnUNetv2_predict -i input -o OUT -d ID -c 3d_fullres -f 0 -chk checkpoint_final.pth -device
  cpu -npp 3 -nps 3 --disable_progress_bar [--disable_tta]`` (``-npp``/``-nps`` are nnU-Net's
  defaults, passed explicitly so that ``nnUNet_npp``/``nnUNet_nps`` cannot change them);
* ``autoseg predict -i input -o OUT -m MODEL -c 3d_fullres -f 0 --device cpu [--no-tta]``.

For each TTA setting (``--tta both|on|off``) and repeat (``--repeat R``), both tools run on the
N-case input and on the K-case input, the tool order alternating between blocks. Before that,
each tool predicts the 1-case input once untimed, without TTA (warm page cache for its venv's
torch and the checkpoint). Per run: wall time of the whole command (interpreter start, imports,
model loading, all cases, writing), CPU time of the process tree (``getrusage(RUSAGE_CHILDREN)``),
peak PSS / RSS sum of the process tree (``bench_plan.TreeMemorySampler``, every
``--mem-interval`` s, default 0.5; 0 turns it off; the sampler's own CPU time is recorded as
``sampler_cpu_s``), the load average, and at start and end of the script ``/proc/loadavg`` and
the processes above 10 % CPU. Reported: ``wall/N``, the marginal seconds per case
``(wall_N - wall_K) / (N - K)`` and the start-up ``wall_K - K * marginal`` (model loading,
imports, worker processes), medians over the repeats, and the ratios autoseg / nnU-Net. K is 3,
not 1, because nnU-Net spawns ``min(cases, -npp)`` preprocessing processes (each importing torch)
besides its ``-nps`` export processes and a multiprocessing manager: with K = 1 its start-up
would be smaller than in the N-case run and the difference would be charged to the cases.

Threads: both processes get ``OMP_NUM_THREADS=--threads`` (default: the number of CPUs; nnU-Net on
the CPU also calls ``torch.set_num_threads(cpu_count())`` itself). The threads in effect are read
at exit of each tool's main process by a ``sitecustomize`` probe on ``PYTHONPATH`` (it only
registers an ``atexit`` hook that writes ``torch.get_num_threads()`` to a file).

Usage::

    .venv/bin/python benchmarks/bench_predict.py [--dataset ../shared/data/Dataset004_Hippocampus] \
        [--cases 20] [--repeat 2] [--tta both|on|off] [--threads 2] [--nnunet-npp 3] [--nnunet-nps 3] \
        [--mem-interval 0.5] [--out benchmarks/work/bench_predict] [--json-out FILE] \
        [--models-dir DIR] [--keep]

Variants (issues 15, 22): ``--backends default auto torch onnxruntime openvino torch-export`` runs
``autoseg predict --backend B`` for each (``autoseg-B``; the export is made in the untimed warm-up run);
``default`` is the row ``autoseg``, the command without a backend flag, the one users type
(``backend_used`` in the JSON: what ran). Default: ``default auto torch``; the masks of every
variant are compared with ``autoseg-torch``'s, the reference (``mask_agreement``);
``--baseline-src DIR`` adds ``autoseg-base``, the autoseg of another source tree (e.g. ``git archive
<commit> autoseg conf | tar -x -C DIR``) on ``PYTHONPATH``, for before/after comparisons;
``--autoseg-model DIR`` predicts with an existing results folder (no plan, no training). Without
``benchmarks/.nnunet-venv`` (or with ``--no-nnunet``) only autoseg runs, and the ratios divide by
``autoseg-base`` when it is there. ``--synthetic-shape Z Y X --synthetic-spacing Z Y X`` predicts
smooth random volumes of that size and spacing instead of the dataset's images: many tiles, and
resampling on the way in and out when the spacing differs from the plan's.

``--models-dir`` reuses (or creates) the preprocessed data and both models in ``DIR``; otherwise
they are made in the run's temporary folder, which is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# sibling benchmark scripts (this file is run as a script, so its folder is on sys.path)
from bench_plan import TreeMemorySampler
from bench_train import _run_logged, autoseg_exe, fmt_table, nnunet_env, prepare

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_NNUNET_VENV = HERE / ".nnunet-venv"
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"
CONFIGURATION = "3d_fullres"
TOOLS: tuple[str, ...] = ("nnunet", "autoseg")  # set in main(): the variants of this run
BACKENDS = ("default", "auto", "torch", "torch-export", "onnxruntime", "openvino")


def label(tool: str) -> str:
    """nnU-Net, autoseg (the default command), autoseg-<backend>, autoseg-base (another source tree)."""
    return "nnU-Net" if tool == "nnunet" else tool


def variant(backend: str) -> str:
    """The tool name of ``--backends`` entry ``backend``: ``default`` is the command without a flag."""
    return "autoseg" if backend == "default" else f"autoseg-{backend}"


def backend_of(tool: str) -> str | None:
    """The --backend flag of an autoseg variant (None: no flag, for autoseg, nnU-Net and the baseline)."""
    rest = tool.removeprefix("autoseg-")
    return rest if tool.startswith("autoseg-") and rest in BACKENDS else None


# Imported at start-up by every Python process of a timed run (PYTHONPATH): records the torch
# threads in effect when the process exits, if it imported torch. Nothing else.
PROBE = """\
import atexit, json, os, sys


def _bench_predict_probe():
    torch = sys.modules.get("torch")
    folder = os.environ.get("BENCH_PREDICT_PROBE_DIR")
    if torch is None or not folder:
        return
    try:
        info = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": sys.argv[:2],
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        }
        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as f:
            json.dump(info, f)
    except Exception:
        pass


atexit.register(_bench_predict_probe)
"""


# --------------------------------------------------------------------------------------
# workers (run in another environment through this file with --worker)
# --------------------------------------------------------------------------------------
def worker_nnunet_checkpoint(p: dict[str, Any]) -> dict[str, Any]:
    """An untrained fold-0 model folder for nnUNetv2_predict (runs in benchmarks/.nnunet-venv)."""
    import importlib.metadata

    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    base = Path(p["nnunet_preprocessed"]) / p["nnunet_name"]
    plans = load_json(str(base / "nnUNetPlans.json"))
    plans["continue_training"] = False  # what run_training.get_trainer_from_args adds
    dataset_json = load_json(str(base / "dataset.json"))
    trainer = nnUNetTrainer(plans, CONFIGURATION, 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    # sets inference_allowed_mirroring_axes, which the checkpoint stores (else None: no TTA at all)
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    out_base, fold = Path(trainer.output_folder_base), Path(trainer.output_folder)
    fold.mkdir(parents=True, exist_ok=True)
    # what nnUNetTrainer.on_train_start copies next to the folds, for inference
    save_json(trainer.plans_manager.plans, str(out_base / "plans.json"), sort_keys=False)
    save_json(trainer.dataset_json, str(out_base / "dataset.json"), sort_keys=False)
    shutil.copyfile(base / "dataset_fingerprint.json", out_base / "dataset_fingerprint.json")
    trainer.save_checkpoint(str(fold / "checkpoint_final.pth"))
    return {
        "model_folder": str(out_base),
        "network": type(trainer.network).__name__,
        "parameters": sum(q.numel() for q in trainer.network.parameters()),
        "patch_size": list(trainer.configuration_manager.patch_size),
        "inference_allowed_mirroring_axes": trainer.inference_allowed_mirroring_axes,
        "versions": {"torch": torch.__version__, "nnunetv2": importlib.metadata.version("nnunetv2")},
    }


def check_outputs(p: dict[str, Any]) -> dict[str, Any]:
    """Every input case has an output mask on the input's grid with valid labels (SimpleITK)."""
    import numpy as np
    import SimpleITK as sitk

    out_dir, ending, allowed = Path(p["output"]), p["ending"], set(p["labels"])
    problems: list[str] = []
    fg: list[float] = []
    images = sorted(Path(p["input"]).glob(f"*_0000{ending}"))
    for image in images:
        case = image.name[: -len(f"_0000{ending}")]
        mask = out_dir / f"{case}{ending}"
        if not mask.is_file():
            problems.append(f"{case}: no output")
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(image))
        reader.ReadImageInformation()
        seg = sitk.ReadImage(str(mask))
        for what, a, b in (
            ("size", reader.GetSize(), seg.GetSize()),
            ("spacing", reader.GetSpacing(), seg.GetSpacing()),
            ("origin", reader.GetOrigin(), seg.GetOrigin()),
            ("direction", reader.GetDirection(), seg.GetDirection()),
        ):
            if len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=1e-4):
                problems.append(f"{case}: {what} {b} != input {a}")
        values = sitk.GetArrayViewFromImage(seg)
        extra = set(np.unique(values).tolist()) - allowed
        if extra:
            problems.append(f"{case}: label values {sorted(extra)} not in {sorted(allowed)}")
        fg.append(float((values > 0).mean()))
    return {
        "cases": len(images),
        "ok": not problems and len(images) == p["expected"],
        "problems": problems[:20],
        "foreground_fraction_mean": statistics.fmean(fg) if fg else None,
    }


# --------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------
def make_inputs(dataset: Path, out: Path, n: int, k: int, ending: str) -> tuple[dict[int, Path], list[str]]:
    images = sorted((dataset / "imagesTr").glob(f"*_0000{ending}"))
    if len(images) < n:
        raise SystemExit(f"{dataset}/imagesTr has {len(images)} cases, --cases asks for {n}")
    folders: dict[int, Path] = {}
    for count, name in ((n, "input"), (k, "input_base"), (1, "input_1")):
        if count in folders:
            continue
        folders[count] = folder = out / name
        folder.mkdir()
        for f in images[:count]:
            shutil.copy2(f, folder / f.name)
    return folders, [f.name[: -len(f"_0000{ending}")] for f in images[:n]]


def make_synthetic_inputs(
    out: Path, n: int, k: int, shape: list[int], spacing: list[float], ending: str
) -> tuple[dict[int, Path], list[str]]:
    """N smooth random volumes (z, y, x) = ``shape`` at ``spacing`` mm: many tiles, resampled in and out."""
    import numpy as np
    import SimpleITK as sitk
    from scipy.ndimage import gaussian_filter

    names = [f"synthetic_{i:03d}" for i in range(n)]
    folders: dict[int, Path] = {}
    for count, name in ((n, "input"), (k, "input_base"), (1, "input_1")):
        if count in folders:
            continue
        folders[count] = folder = out / name
        folder.mkdir()
        for i, case in enumerate(names[:count]):
            rng = np.random.default_rng(i)
            volume = gaussian_filter(rng.normal(size=shape), 3).astype(np.float32) * 1000 + 300
            image = sitk.GetImageFromArray(volume)
            image.SetSpacing(tuple(float(v) for v in reversed(spacing)))  # SimpleITK: x, y, z
            sitk.WriteImage(image, str(folder / f"{case}_0000{ending}"))
    return folders, names


def make_models(args: argparse.Namespace, dataset: Path, models: Path) -> dict[str, Any]:
    """Plan + preprocess with both tools, train autoseg's fold 0 briefly, write nnU-Net's untrained fold 0."""
    paths = prepare(args, dataset, models) if not args.autoseg_model else {}
    info: dict[str, Any] = {"paths": paths}

    results = Path(args.autoseg_model) if args.autoseg_model else models / "autoseg_results"
    found = sorted(results.glob(f"*/{CONFIGURATION}/fold_0/checkpoint_final.pt"))
    found = found or sorted(results.glob(f"*/*/{CONFIGURATION}/fold_0/checkpoint_final.pt"))
    if not found:
        results.mkdir(parents=True, exist_ok=True)
        cmd = [*autoseg_exe(), "train", str(dataset), CONFIGURATION, "0", "--device", "cpu"]
        cmd += [
            "trainer.epochs=1",
            f"trainer.iterations_per_epoch={args.train_iterations}",
            "trainer.val_iterations=1",
            "trainer.final_validation=false",
            "trainer.num_workers=0",
        ]
        env = dict(
            os.environ,
            AUTOSEG_PREPROCESSED=paths["autoseg_preprocessed"],
            AUTOSEG_RESULTS=str(results),
        )
        info["autoseg_train_s"] = _run_logged(cmd, env, models / "autoseg_train.log", "autoseg train")
        found = sorted(results.glob(f"*/*/{CONFIGURATION}/fold_0/checkpoint_final.pt"))
        if not found:
            raise SystemExit(f"autoseg train wrote no fold_0/checkpoint_final.pt in {results}")
    # <root>/<plans>/<config>/fold_0/checkpoint_final.pt -> the model root
    info["autoseg_model"] = str(found[0].parents[3])
    if args.autoseg_model and not args.with_nnunet:
        return info
    info["autoseg_train_iterations"] = args.train_iterations
    code = (
        "import json, sys, pathlib; from autoseg.training.checkpoint import load_checkpoint; "
        "s = load_checkpoint(pathlib.Path(sys.argv[1]), map_location='cpu'); "
        "print(json.dumps({k: s[k] for k in ('mirror_axes', 'patch_size', 'architecture')}))"
    )
    meta = subprocess.run(
        [sys.executable, "-c", code, str(found[0])], capture_output=True, text=True, check=True
    )
    info["autoseg_checkpoint"] = json.loads(meta.stdout)
    if not args.with_nnunet:
        return info

    nn_results = models / "nnUNet_results"
    nn_info = models / "nnunet_checkpoint.json"
    if not nn_info.is_file():
        params = {"nnunet_preprocessed": paths["nnUNet_preprocessed"], "nnunet_name": paths["nnunet_name"]}
        cmd = [str(Path(args.nnunet_venv) / "bin" / "python"), str(Path(__file__).resolve())]
        cmd += ["--worker", "nnunet_checkpoint", "--params", json.dumps(params), "--result", str(nn_info)]
        env = nnunet_env(paths, nn_results)
        _run_logged(cmd, env, models / "nnunet_checkpoint.log", "nnU-Net checkpoint")
    info["nnunet_model"] = json.loads(nn_info.read_text())
    info["nnunet_results"] = str(nn_results)
    axes = info["nnunet_model"]["inference_allowed_mirroring_axes"], info["autoseg_checkpoint"]["mirror_axes"]
    if axes[0] is None or list(axes[0]) != list(axes[1]):
        raise SystemExit(f"TTA would differ: mirror axes nnU-Net {axes[0]}, autoseg {axes[1]} ({nn_info})")
    return info


def tool_command(
    tool: str, args: argparse.Namespace, inp: Path, out: Path, tta: bool, models: dict[str, Any], did: int
) -> list[str]:
    if tool == "nnunet":
        cmd = [str(Path(args.nnunet_venv) / "bin" / "nnUNetv2_predict"), "-i", str(inp), "-o", str(out)]
        cmd += ["-d", str(did), "-c", CONFIGURATION, "-f", "0", "-chk", "checkpoint_final.pth"]
        cmd += ["-device", "cpu", "-npp", str(args.nnunet_npp), "-nps", str(args.nnunet_nps)]
        cmd += ["--disable_progress_bar"]
        return cmd + ([] if tta else ["--disable_tta"])
    exe = [sys.executable, "-m", "autoseg"] if tool == "autoseg-base" else autoseg_exe()
    cmd = [*exe, "predict", "-i", str(inp), "-o", str(out), "-m", models["autoseg_model"]]
    cmd += ["-c", CONFIGURATION, "-f", "0", "--checkpoint", "final", "--device", "cpu"]
    backend = backend_of(tool)
    if backend is not None:
        cmd += ["--backend", backend]
    return cmd + ([] if tta else ["--no-tta"])


def tool_env(tool: str, args: argparse.Namespace, models: dict[str, Any], probe_dir: Path) -> dict[str, str]:
    if tool == "nnunet":
        env = nnunet_env(models["paths"], Path(models["nnunet_results"]))
    else:
        env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["BENCH_PREDICT_PROBE_DIR"] = str(probe_dir)
    base = args.baseline_src if tool == "autoseg-base" else None  # that tree's autoseg comes first
    env["PYTHONPATH"] = os.pathsep.join(x for x in (args.probe_path, base, env.get("PYTHONPATH")) if x)
    return env


def timed_run(cmd: list[str], env: dict[str, str], run_dir: Path, interval: float) -> dict[str, Any]:
    """Run ``cmd`` in ``run_dir`` (log: ``run.log``); wall, CPU and peak memory of its process tree."""
    log_path = run_dir / "run.log"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=run_dir
        )
        sampler = None
        if interval > 0:
            with TreeMemorySampler(proc.pid, interval) as sampler:
                rc = proc.wait()
        else:
            rc = proc.wait()
        wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res: dict[str, Any] = {
        "returncode": rc,
        "wall_s": wall,
        "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        "loadavg_before": load,
        "pid": proc.pid,
        "cmd": cmd,
        "log": str(log_path),
    }
    if sampler is not None:
        res.update(
            peak_pss_mib=sampler.peak_pss_kb / 1024,
            peak_rss_mib=sampler.peak_rss_kb / 1024,
            peak_nproc=sampler.peak_nproc,
            sampler_cpu_s=sampler.cpu_s,
        )
    return res


def read_probe(probe_dir: Path, main_pid: int) -> dict[str, Any]:
    """Threads seen by the tool's main process (and by any other process that imported torch)."""
    seen = [json.loads(f.read_text()) for f in sorted(probe_dir.glob("*.json"))]
    main = next((s for s in seen if s["pid"] == main_pid), None)
    return {
        "threads": main and main["threads"],
        "interop_threads": main and main["interop_threads"],
        "other_torch_processes": [
            {k: s[k] for k in ("threads", "interop_threads")} for s in seen if s["pid"] != main_pid
        ],
    }


def run_check(params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    try:
        import numpy  # noqa: F401
        import SimpleITK  # noqa: F401
    except ImportError:  # the parent environment lacks them: check in nnU-Net's
        result = Path(params["output"]).parent / "check.json"
        cmd = [str(Path(args.nnunet_venv) / "bin" / "python"), str(Path(__file__).resolve())]
        cmd += ["--worker", "check", "--params", json.dumps(params), "--result", str(result)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())
    return check_outputs(params)


def one_run(
    tool: str,
    n_cases: int,
    tta: bool,
    tag: str,
    args: argparse.Namespace,
    ctx: dict[str, Any],
) -> dict[str, Any]:
    run_dir = ctx["out"] / "runs" / f"{tag}_{tool}_n{n_cases}_{'tta' if tta else 'notta'}"
    probe_dir = run_dir / "probe"
    probe_dir.mkdir(parents=True)
    inp = ctx["inputs"][n_cases]
    cmd = tool_command(tool, args, inp, run_dir / "out", tta, ctx["models"], ctx["did"])
    res = timed_run(cmd, tool_env(tool, args, ctx["models"], probe_dir), run_dir, args.mem_interval)
    res.update(tool=tool, cases=n_cases, tta=tta, tag=tag, **read_probe(probe_dir, res["pid"]))
    if res["returncode"] != 0:
        tail = "\n".join(Path(res["log"]).read_text(errors="replace").splitlines()[-30:])
        rc = res["returncode"]
        raise SystemExit(f"{tool} predict failed (rc {rc}); last lines of {res['log']}:\n{tail}")
    params = {
        "input": str(inp),
        "output": str(run_dir / "out"),
        "ending": ctx["ending"],
        "labels": ctx["labels"],
        "expected": n_cases,
    }
    res["check"] = run_check(params, args)
    record = run_dir / "out" / "predict.json"
    if tool != "nnunet" and record.is_file():  # the backend autoseg ran (the default command chooses)
        res["backend_used"] = json.loads(record.read_text()).get("backend")
    mem = f", peak PSS {res['peak_pss_mib']:.0f} MiB" if "peak_pss_mib" in res else ""
    print(
        f"[{tag}] {label(tool):20s} {n_cases:3d} case(s) TTA {'on ' if tta else 'off'}: "
        f"{res['wall_s']:6.1f}s wall, "
        f"{res['cpu_s']:6.1f}s CPU{mem}, threads {res['threads']}, load {res['loadavg_before'][0]:.2f}, "
        f"outputs {'ok' if res['check']['ok'] else 'BAD ' + '; '.join(res['check']['problems'][:3])}"
        f"{', backend ' + str(res['backend_used']) if res.get('backend_used') else ''}",
        flush=True,
    )
    return res


def summarize(runs: list[dict[str, Any]], n: int, k: int, tta_modes: list[bool]) -> dict[str, Any]:
    """Medians per (TTA, tool) and the ratios autoseg / nnU-Net."""
    keys = ("wall_s", "cpu_s", "peak_pss_mib", "peak_rss_mib")
    summary: dict[str, Any] = {}
    for tta in tta_modes:
        mode = "tta" if tta else "no_tta"
        summary[mode] = {}
        for tool in TOOLS:
            same = [r for r in runs if r["tool"] == tool and r["tta"] == tta]
            mine = {c: [r for r in same if r["cases"] == c] for c in (n, k)}
            s: dict[str, Any] = {"runs": len(mine[n])}
            for key in keys:
                vals = [r[key] for r in mine[n] if key in r]
                s[key] = statistics.median(vals) if vals else None
            s["per_case_s"] = s["wall_s"] / n
            walls_k = [r["wall_s"] for r in mine[k]] if k < n else []
            s["wall_base_s"] = statistics.median(walls_k) if walls_k else None
            marginal = (s["wall_s"] - s["wall_base_s"]) / (n - k) if walls_k else None
            s["marginal_per_case_s"] = marginal
            s["startup_s"] = s["wall_base_s"] - k * marginal if marginal is not None else None
            s["peak_nproc"] = max((r.get("peak_nproc", 0) for r in mine[n]), default=None)
            summary[mode][tool] = s
        ref = reference_tool()
        summary[mode]["reference"] = ref
        summary[mode]["ratio"] = {}
        for tool in TOOLS:
            if ref is None or tool == ref:
                continue
            a, b = summary[mode][tool], summary[mode][ref]
            summary[mode]["ratio"][tool] = {k: a[k] / b[k] for k in a if isinstance(a[k], float) and b.get(k)}
    return summary


def compare_masks(runs: list[dict[str, Any]], n: int, cases: list[str], ending: str) -> dict[str, Any]:
    """Each variant's masks against the torch reference (``autoseg-torch``, else ``autoseg``): voxel
    agreement and Dice per label."""
    import numpy as np
    import SimpleITK as sitk

    out: dict[str, Any] = {}
    reference = "autoseg-torch" if any(r["tool"] == "autoseg-torch" for r in runs) else "autoseg"
    for tta in (True, False):
        ref = next((r for r in runs if r["tool"] == reference and r["tta"] == tta and r["cases"] == n), None)
        if ref is None:
            continue
        for run in (
            r for r in runs if r["tta"] == tta and r["cases"] == n and r["tool"] not in (reference, "nnunet")
        ):
            agree, dice = [], []
            for case in cases:
                a, b = (
                    sitk.GetArrayFromImage(
                        sitk.ReadImage(str(Path(r["log"]).parent / "out" / f"{case}{ending}"))
                    )
                    for r in (ref, run)
                )
                agree.append(float((a == b).mean()))
                for label in set(np.unique(a)) | set(np.unique(b)):
                    if label:
                        dice.append(
                            2
                            * float(((a == label) & (b == label)).sum())
                            / ((a == label).sum() + (b == label).sum())
                        )
            key = f"{run['tool']} vs {reference}, TTA {'on' if tta else 'off'}"
            out.setdefault(key, {"min_voxel_agreement": min(agree), "min_dice": min(dice) if dice else None})
    for key, v in out.items():
        print(f"masks {key}: min voxel agreement {v['min_voxel_agreement']:.6f}, min Dice {v['min_dice']}")
    return out


def reference_tool() -> str | None:
    """What the ratios divide by: nnU-Net when it ran, else the baseline source tree, else nothing."""
    return next((t for t in ("nnunet", "autoseg-base") if t in TOOLS), None)


def print_summary(summary: dict[str, Any], n: int, k: int, runs: list[dict[str, Any]]) -> None:
    head = ["TTA", "tool", f"wall {n} cases", "wall/N", f"wall {k} cases", "marginal s/case", "start-up"]
    head += ["CPU", "peak PSS MiB", "peak RSS MiB", "procs", "threads"]
    rows = [head]

    def f(x: float | None, fmt: str) -> str:
        return "" if x is None else format(x, fmt)

    for mode, per in summary.items():
        for tool in TOOLS:
            s = per[tool]
            threads = sorted({r["threads"] for r in runs if r["tool"] == tool and r["threads"] is not None})
            rows.append(
                [
                    "on" if mode == "tta" else "off",
                    label(tool),
                    f(s["wall_s"], ".1f"),
                    f(s["per_case_s"], ".2f"),
                    f(s["wall_base_s"], ".1f"),
                    f(s["marginal_per_case_s"], ".2f"),
                    f(s["startup_s"], ".1f"),
                    f(s["cpu_s"], ".1f"),
                    f(s["peak_pss_mib"], ".0f"),
                    f(s["peak_rss_mib"], ".0f"),
                    str(s["peak_nproc"] or ""),
                    ",".join(map(str, threads)),
                ]
            )
        for tool, r in per["ratio"].items():
            rows.append(_ratio_row(f"{label(tool)}/{label(per['reference'])}", r, f))
    print(fmt_table(rows))
    print(
        "(seconds, medians over the repeats; marginal = (wall_N - wall_K) / (N - K); "
        "start-up = wall_K - K * marginal; CPU, memory and processes of the N-case runs, whole process tree)"
    )


def _ratio_row(name: str, r: dict[str, float], f: Any) -> list[str]:
    keys = [("wall_s", ".2f"), ("per_case_s", ".2f"), ("wall_base_s", ".2f"), ("marginal_per_case_s", ".2f")]
    keys += [("startup_s", ".2f"), ("cpu_s", ".2f"), ("peak_pss_mib", ".2f"), ("peak_rss_mib", ".2f")]
    return ["", name, *(f(r.get(k), fmt) for k, fmt in keys), "", ""]


def machine_state() -> dict[str, Any]:
    """/proc/loadavg and the busiest processes (other work on the machine skews every number)."""
    ps = subprocess.run(
        ["ps", "-eo", "pid,pcpu,etimes,args", "--sort=-pcpu"], capture_output=True, text=True, check=False
    )
    rows = [line.split(None, 3) for line in ps.stdout.splitlines()[1:]]
    busy = [" ".join(r)[:160] for r in rows if float(r[1]) >= 10.0 and int(r[0]) != os.getpid()][:8]
    return {"loadavg": Path("/proc/loadavg").read_text().strip(), "busy_processes": busy}


def versions(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata as md

    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for pkg in ("autoseg", "torch", "monai", "SimpleITK", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[f"autoseg_env_{pkg}"] = md.version(pkg)
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({k: m.version(k) for k in ('nnunetv2', 'torch', 'SimpleITK', 'numpy')}))"
    )
    nn_python = Path(args.nnunet_venv) / "bin" / "python"
    nn = (
        subprocess.run([str(nn_python), "-c", code], capture_output=True, text=True)
        if nn_python.exists()
        else None
    )
    if nn is not None and nn.returncode == 0:
        out.update({f"nnunet_env_{k}": v for k, v in json.loads(nn.stdout).items()})
    git_cmd = ["git", "-C", str(REPO), "describe", "--always", "--dirty"]
    git = subprocess.run(git_cmd, capture_output=True, text=True)
    out["autoseg_git"] = git.stdout.strip() or None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--cases", type=int, default=20, help="cases of imagesTr to predict (N)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tta", choices=("both", "on", "off"), default="both", help="mirroring TTA")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS, both tools")
    ap.add_argument("--nnunet-npp", type=int, default=3, help="nnUNetv2_predict -npp (its default: 3)")
    ap.add_argument("--nnunet-nps", type=int, default=3, help="nnUNetv2_predict -nps (its default: 3)")
    ap.add_argument("--base-cases", type=int, default=3, help="K: cases of the start-up runs (< N)")
    ap.add_argument("--no-startup-runs", action="store_true", help="skip the K-case runs")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed 1-case run of each tool")
    ap.add_argument("--mem-interval", type=float, default=0.5, help="memory sampling period, s (0: off)")
    ap.add_argument("--train-iterations", type=int, default=2, help="autoseg model: its epoch's iterations")
    ap.add_argument("--plan-workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "work" / "bench_predict")
    ap.add_argument("--json-out", type=Path, default=None, help="default: <out>/bench_predict.json")
    ap.add_argument("--models-dir", type=Path, default=None, help="reuse/keep the plans and models here")
    ap.add_argument("--nnunet-venv", default=str(DEFAULT_NNUNET_VENV))
    ap.add_argument("--keep", action="store_true", help="keep the run folder (inputs, outputs, logs, models)")
    ap.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=["default", "auto", "torch"],
        help="autoseg predict --backend, each a variant: default is the command without the flag (row "
        "'autoseg'), the others autoseg-<backend>; masks are compared with autoseg-torch's",
    )
    ap.add_argument("--baseline-src", default=None, help="another autoseg source tree, run as autoseg-base")
    ap.add_argument(
        "--autoseg-model", default=None, help="an existing autoseg results folder (skip plan+train)"
    )
    ap.add_argument("--no-nnunet", action="store_true", help="autoseg only, even if the nnU-Net venv exists")
    ap.add_argument(
        "--synthetic-shape",
        type=int,
        nargs=3,
        default=None,
        help="predict synthetic volumes of this shape instead",
    )
    ap.add_argument("--synthetic-spacing", type=float, nargs=3, default=(2.0, 1.0, 1.0), help="their spacing")
    ap.add_argument("--worker", choices=("nnunet_checkpoint", "check"), help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        fn = {"nnunet_checkpoint": worker_nnunet_checkpoint, "check": check_outputs}[args.worker]
        args.result.write_text(json.dumps(fn(json.loads(args.params)), indent=1))
        return 0

    dataset = args.dataset.resolve()
    if not (dataset / "dataset.json").is_file():
        sys.exit(f"{dataset}/dataset.json not found")
    global TOOLS
    args.with_nnunet = not args.no_nnunet and (Path(args.nnunet_venv) / "bin" / "nnUNetv2_predict").exists()
    if not args.with_nnunet and not args.no_nnunet:
        print(f"note: no {args.nnunet_venv}/bin/nnUNetv2_predict (benchmarks/setup_nnunet.sh): autoseg only")
    variants = [variant(b) for b in dict.fromkeys(args.backends)]
    TOOLS = tuple(
        (["nnunet"] if args.with_nnunet else []) + (["autoseg-base"] if args.baseline_src else []) + variants
    )
    if args.cases < 1 or args.repeat < 1:
        sys.exit("--cases and --repeat must be >= 1")
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    ending = dataset_json["file_ending"]
    labels = sorted({int(v) for v in dataset_json["labels"].values() if not isinstance(v, list)})
    tta_modes = {"both": [True, False], "on": [True], "off": [False]}[args.tta]

    load_start = os.getloadavg()
    state_start = machine_state()
    t_start = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out.resolve() / f"predict_{stamp}"
    out.mkdir(parents=True)
    probe_pkg = out / "probe_site"
    probe_pkg.mkdir()
    (probe_pkg / "sitecustomize.py").write_text(PROBE)
    args.probe_path = str(probe_pkg)

    models_dir = args.models_dir.resolve() if args.models_dir else out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    models = make_models(args, dataset, models_dir)
    did = int(models["paths"]["nnunet_name"][len("Dataset") :][:3]) if args.with_nnunet else 0
    base = args.base_cases if 0 < args.base_cases < args.cases and not args.no_startup_runs else args.cases
    if args.synthetic_shape:
        inputs, cases = make_synthetic_inputs(
            out, args.cases, base, args.synthetic_shape, args.synthetic_spacing, ending
        )
    else:
        inputs, cases = make_inputs(dataset, out, args.cases, base, ending)
    ctx = {
        "out": out,
        "inputs": inputs,
        "models": models,
        "did": did,
        "ending": ending,
        "labels": labels,
    }
    print(
        f"models ready ({time.perf_counter() - t_start:.0f}s); {args.cases} case(s) in {inputs[args.cases]}; "
        f"load average {load_start[0]:.2f}",
        flush=True,
    )

    warmup = []
    if not args.no_warmup:
        for tool in TOOLS:
            warmup.append(one_run(tool, 1, False, "warmup", args, ctx))

    runs: list[dict[str, Any]] = []
    block = 0
    for rep in range(args.repeat):
        for tta in tta_modes:
            order = TOOLS if block % 2 == 0 else TOOLS[::-1]
            block += 1
            for tool in order:
                runs.append(one_run(tool, args.cases, tta, f"rep{rep}", args, ctx))
                if base < args.cases:
                    runs.append(one_run(tool, base, tta, f"rep{rep}", args, ctx))

    summary = summarize(runs, args.cases, base, tta_modes)
    agreement = compare_masks(runs, args.cases, cases, ending)
    load_end = os.getloadavg()
    state_end = machine_state()
    np_, ns = args.nnunet_npp, args.nnunet_nps
    print(
        f"\n{dataset.name}, {CONFIGURATION}, fold 0, {args.cases} case(s), {args.repeat} repeat(s), CPU; "
        f"OMP_NUM_THREADS={args.threads}; nnU-Net -npp {np_} -nps {ns}; "
        f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end"
    )
    print_summary(summary, args.cases, base, runs)
    bad = [r for r in warmup + runs if not r["check"]["ok"]]

    report = {
        "dataset": str(dataset),
        "configuration": CONFIGURATION,
        "cases": cases,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "machine_start": state_start,
        "machine_end": state_end,
        "timestamp": stamp,
        "total_s": time.perf_counter() - t_start,
        "versions": versions(args),
        "models": models,
        "summary": summary,
        "outputs_ok": not bad,
        "mask_agreement": agreement,
        "warmup": warmup,
        "runs": runs,
    }
    json_out = args.json_out or args.out.resolve() / "bench_predict.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {json_out} ({report['total_s']:.0f}s in all)")
    if bad:
        for r in bad:
            print(f"BAD outputs: {r['log']}: {r['check']['problems'][:5]}")
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
