"""Every benchmark script still runs: its argument parsing, and the autoseg side on a tiny dataset.

The scripts in benchmarks/ compare autoseg with nnU-Net v2 and take minutes to hours; CI has no
nnU-Net environment. Here each one's ``--help`` must work (imports and argument plumbing), and
the ones that time autoseg run their autoseg side for real on a tiny synthetic dataset (a few
seconds each): ``bench_predict.py`` (the default command and ``--backend torch``, masks compared),
``bench_train.py`` (bf16 and float32), ``bench_plan.py`` and ``profile_predict.py``. Nothing is timed
or compared against a speed here; the numbers go to benchmarks/RESULTS.md.
(``bench_predict_memory.py`` has its own test.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.inference.backends import choose_backend
from autoseg.utils.device import cpu_native_bf16

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "bench_predict_memory.py")
# PYTHONPATH: bench_faults.py runs from the repository root with it (it uses tests/faults' driver)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout
    )
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_scripts_are_all_covered() -> None:
    """A new benchmark script must be added here (and to the smoke runs when it times autoseg)."""
    assert set(SCRIPTS) == {
        "bench_augment.py", "bench_augment_presets.py", "bench_faults.py", "bench_plan.py",
        "bench_predict.py", "bench_resenc.py", "bench_storage.py", "bench_train.py",
        "gpu_acceptance.py", "gpu_bundle.py", "profile_predict.py", "bench_transfer.py",
        "bench_uncertainty.py", "make_large_ct.py",
    }  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_parses(script: str, tmp_path: Path) -> None:
    proc = _run([str(BENCH / script), "--help"], tmp_path, timeout=120)
    assert "usage:" in proc.stdout and "--" in proc.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 5-case synthetic dataset (5 folds); bench_predict makes its models folder (plan + 1 iteration)."""
    root = tmp_path_factory.mktemp("bench")
    raw = root / "Dataset977_BenchSmoke"
    cmd = [*("-m", "autoseg", "synthetic", str(raw)), *("--num-cases", "5", "--shape", "16", "24", "24")]
    _run([*cmd, "--classes", "1", "--seed", "3"], root)
    return {"root": root, "raw": raw, "models": root / "models"}


def test_bench_predict_runs_auto_beside_torch(tiny: dict[str, Path]) -> None:
    out = tiny["root"] / "predict.json"
    args = [str(BENCH / "bench_predict.py"), "--dataset", str(tiny["raw"]), "--no-nnunet"]
    args += ["--models-dir", str(tiny["models"]), "--cases", "2", "--no-startup-runs", "--repeat", "1"]
    args += ["--tta", "on", "--no-warmup", "--threads", "1", "--train-iterations", "1"]
    args += ["--backends", "auto", "torch", "--mem-interval", "0.2", "--out", str(tiny["root"] / "bp")]
    proc = _run([*args, "--json-out", str(out)], tiny["root"])
    report = json.loads(out.read_text())
    assert report["outputs_ok"] and "autoseg-torch" in proc.stdout
    used = {(r["tool"], r["cases"]): r["backend_used"] for r in report["runs"]}
    default = {"3d_fullres": choose_backend("auto", torch.device("cpu"))[0]}
    assert used == {("autoseg-auto", 2): default, ("autoseg-torch", 2): {"3d_fullres": "torch"}}
    assert all("--backend" in r["cmd"] for r in report["runs"] if r["tool"].startswith("autoseg-"))
    agreement = report["mask_agreement"]["autoseg-auto vs autoseg-torch, TTA on"]
    assert agreement["min_voxel_agreement"] >= 0.9999
    tta = report["summary"]["tta"]["autoseg-auto"]
    assert tta["wall_s"] > 0 and tta["cpu_s"] > 0 and tta["per_case_s"] == tta["wall_s"] / 2


def test_profile_predict_times_every_stage(tiny: dict[str, Path]) -> None:
    models = sorted(tiny["models"].glob("autoseg_results/*"))
    if not models:
        pytest.skip("needs the model of test_bench_predict_runs_auto_beside_torch")
    out = tiny["root"] / "profile.json"
    images = tiny["raw"] / "imagesTr"
    args = [str(BENCH / "profile_predict.py"), "--json-out", str(out), "--"]
    args += ["-i", str(images), "-o", str(tiny["root"] / "prof"), "-m", str(models[0]), "--device", "cpu"]
    proc = _run(args, tiny["root"])
    report = json.loads(out.read_text())
    assert report["returncode"] == 0 and report["missing"] == [], report["missing"]  # the code it wraps moved
    stages = report["stages"]
    assert stages["forward passes"]["calls"] >= 5 and stages["read"]["calls"] == 5
    assert stages["export"]["calls"] == 5 and stages["load model"]["calls"] == 1
    assert 0 < stages["forward passes"]["seconds"] < report["wall_s"] and "forward passes" in proc.stdout


def test_bench_train_autoseg_side_in_each_precision(tiny: dict[str, Path]) -> None:
    out = tiny["root"] / "train.json"
    args = [str(BENCH / "bench_train.py"), "--dataset", str(tiny["raw"]), "--only", "autoseg"]
    args += ["--iterations", "3", "--warmup", "1", "--val-iterations", "1", "--step-iterations", "2"]
    args += ["--repeat", "1", "--threads", "1", "--ab-rounds", "0", "--prep-dir", str(tiny["root"] / "prep")]
    proc = _run([*args, "--out", str(tiny["root"] / "bt"), "--json-out", str(out)], tiny["root"])
    report = json.loads(out.read_text())
    runs = {r["tool"]: r for r in report["runs"]}
    assert set(runs) == {"autoseg", "autoseg-bf16", "autoseg-fp32"}
    assert not (tiny["root"] / "prep" / "nnUNet_raw").exists()
    default = "bfloat16 autocast" if cpu_native_bf16() else "float32"  # amp_dtype=auto on this CPU
    assert runs["autoseg"]["precision"] == default
    assert runs["autoseg-bf16"]["precision"] == "bfloat16 autocast"
    assert runs["autoseg-fp32"]["precision"] == "float32"
    for run in runs.values():
        assert run["summary"]["iteration_s"] > 0 and run["summary"]["n_measured"] == 2
    assert "autoseg-fp32" in proc.stdout


def test_bench_plan_autoseg_side(tiny: dict[str, Path]) -> None:
    out = tiny["root"] / "plan.json"
    args = [
        str(BENCH / "bench_plan.py"),
        "--dataset",
        str(tiny["raw"]),
        "--only",
        "autoseg",
        "--workers",
        "1",
    ]
    _run([*args, "--out", str(tiny["root"] / "bpl"), "--json-out", str(out)], tiny["root"])
    report = json.loads(out.read_text())
    assert report["summary"]["autoseg"]["n_ok"] == 1 and report["summary"]["autoseg"]["wall_s"] > 0


def test_make_large_ct_writes_a_dataset_that_validates(tmp_path: Path) -> None:
    """make_large_ct (the many-class CT of issue 22's must-show 2 and 3), at a tiny size: a dataset
    autoseg validates, with every requested label present."""
    raw = tmp_path / "Dataset978_SmallCT"
    args = [str(BENCH / "make_large_ct.py"), str(raw), "--cases", "1", "--shape", "12", "24", "24"]
    _run([*args, "--classes", "5"], tmp_path)
    desc = json.loads((raw / "dataset.json").read_text())
    assert len(desc["labels"]) == 6 and desc["numTraining"] == 1
    import SimpleITK as sitk

    label = sitk.GetArrayFromImage(sitk.ReadImage(str(next((raw / "labelsTr").iterdir()))))
    assert label.shape == (12, 24, 24) and set(np.unique(label).tolist()) == set(range(6))
    _run(["-m", "autoseg", "validate", str(raw)], tmp_path)


def test_bench_resenc_reports_parameters_and_memory(tiny: dict[str, Path]) -> None:
    """bench_resenc without --time (no nnU-Net): each planner preset's network is built and sized."""
    out = tiny["root"] / "resenc.json"
    args = [str(BENCH / "bench_resenc.py"), "--dataset", str(tiny["raw"]), "--json-out", str(out)]
    _run(args, tiny["root"])
    counts = json.loads(out.read_text())["counts"]
    assert {c["configuration"] for c in counts} >= {"3d_fullres", "2d"}
    assert len({c["preset"] for c in counts}) >= 2
    for c in counts:  # the planner's memory estimate is the built network's own count
        assert c["autoseg_params"] > 0 and c["plan_estimate"] == c["autoseg_conv_elements"] > 0, c
