"""benchmarks/bench_predict_memory.py cannot rot: its autoseg side runs on a tiny case, and the
arguments it hands to bench_predict's nnU-Net path are every one that path reads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))


def attributes_read(path: Path, function: str) -> set[str]:
    """Names read from ``args`` (``args.x`` and ``getattr(args, "x", ...)``) inside ``function``."""
    tree = ast.parse(path.read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "args":
            names.add(sub.attr)
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and sub.func.id == "getattr"
            and isinstance(sub.args[0], ast.Name)
            and sub.args[0].id == "args"
            and isinstance(sub.args[1], ast.Constant)
            and len(sub.args) == 2  # getattr with a default tolerates a missing attribute
        ):
            names.add(sub.args[1].value)
    return names


def test_nnunet_path_gets_every_argument_it_reads() -> None:
    import bench_predict_memory

    namespace = vars(bench_predict_memory.models_namespace(bench_predict_memory.parse_args([])))
    needed = attributes_read(BENCH / "bench_predict.py", "make_models")
    needed |= attributes_read(BENCH / "bench_train.py", "prepare")
    assert {"autoseg_model", "with_nnunet", "plan_workers"} <= needed  # the scan sees the reads
    assert needed <= set(namespace), f"missing: {sorted(needed - set(namespace))}"


def test_autoseg_side_runs_and_reports_memory(tmp_path: Path) -> None:
    out, result = tmp_path / "work", tmp_path / "result.json"
    cmd = [
        sys.executable,
        str(BENCH / "bench_predict_memory.py"),
        "--only",
        "autoseg",
        "--shape",
        "20",
        "64",
        "64",
    ]
    cmd += ["--classes", "6", "--train-shape", "16", "32", "32", "--train-iterations", "1", "--threads", "1"]
    cmd += ["--out", str(out), "--json-out", str(result), "--mem-interval", "0.05"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads(result.read_text())
    autoseg = record["autoseg"]
    assert autoseg["returncode"] == 0 and autoseg["output"] == "same size and spacing as the input"
    assert record["nnunet"].startswith("--only autoseg")
    assert 0 < autoseg["predict_json_memory"]["peak_rss_mib"] <= autoseg["peak_rss_tree_mib"] + 50
    assert autoseg["peak_pss_tree_mib"] > 50 and autoseg["export_s"][0] >= 0
