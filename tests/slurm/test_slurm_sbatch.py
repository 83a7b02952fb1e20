"""scripts/slurm_train.sbatch, the example for one data-parallel fold under SLURM, submitted as it is
to the one-node cluster: two gloo CPU ranks under torchrun's c10d rendezvous train one fold."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.slurm.helpers import planned_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm_train.sbatch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_slurm_sbatch_example_trains_one_fold_on_two_ranks(slurm_cluster, tmp_path):
    raw, roots = planned_dataset(tmp_path, 961, seed=5)
    schedule = ["--trainer", "quick", "trainer.epochs=1", "trainer.iterations_per_epoch=2"]
    schedule += ["trainer.val_iterations=1", "trainer.num_workers=0", "trainer.tta_mirroring=false"]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # this venv's torchrun and autoseg
        "GPUS_PER_NODE": "2",
        "AUTOSEG_DEVICE": "cpu",
        "RDZV_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }
    sbatch = ["sbatch", "--wait", "--gres=none", "--cpus-per-task=2", "--time=20", "--chdir", str(tmp_path)]
    sbatch += [
        f"--output={tmp_path / 'job-%j.out'}",
        str(SCRIPT),
        str(raw),
        "3d_fullres",
        "0",
        *roots,
        *schedule,
    ]
    done = subprocess.run(sbatch, env=env, capture_output=True, text=True, timeout=900)
    outputs = "".join(p.read_text() for p in tmp_path.glob("job-*.out"))
    assert done.returncode == 0, done.stdout + done.stderr + outputs
    fold = tmp_path / "res" / raw.name / "default" / "3d_fullres" / "fold_0"
    assert (fold / "checkpoint_final.pt").is_file() and (fold / "validation" / "summary.json").is_file()
    assert "x 2 ranks (gloo)" in (fold / "training_log.txt").read_text()
