"""benchmarks/gpu_acceptance.py on the CPU (``--quick``): the GPU acceptance command cannot rot.

It trains three short runs in their own processes, kills one with SIGKILL mid-epoch and resumes
it, predicts with TTA and prints the table; about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_acceptance.py"


def test_gpu_acceptance_quick_on_the_cpu(tmp_path):
    out = tmp_path / "acceptance"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| yes: bit-identical (trainer.deterministic=true)" in proc.stdout
    summary = json.loads((out / "acceptance.json").read_text())
    assert summary["resume"]["match"] and len(summary["resume"]["resumed"]) == 3
    assert summary["precision"]["autocast"] == "bfloat16" and summary["peak_gpu_mem_gb"] is None
    assert summary["iterations_per_s"] > 0 and 0 <= summary["data_wait_share_device"] < 1
    assert 0 <= summary["val_dice"] <= 1 and summary["predict"]["cases"] >= 1
    # the killed run really died mid-epoch: its log stops inside epoch 1, the resumed part restarts there
    log = (out / "killed" / "training_log.txt").read_text()
    assert "resuming at epoch 1 of 3" in log and log.count("epoch 0:") == 1
