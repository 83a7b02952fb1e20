"""Data-parallel training on CPU: 2 gloo processes under torchrun train in lockstep, a failing rank
ends the job, ``--gpus N --device cpu`` launches torchrun itself, and rank shares of a batch add up
to the single-process batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autoseg.cli import main
from autoseg.data.augment import Augmenter
from autoseg.data.cases import PreprocessedCases
from autoseg.data.loader import BatchDataset
from autoseg.data.sampling import PatchSampler
from autoseg.synthetic.dataset import generate_dataset
from autoseg.training.checkpoint import load_checkpoint
from autoseg.training.distributed import DistributedContext, batch_share, describe_split, rank_device
from autoseg.training.setup import resume_note
from tests.presets import easy_spec, fast_overrides

#: The CLI under torchrun, with test hooks. Usage: entry.py MODE OUT_DIR autoseg-arguments...
#: Every rank that ends well saves its final weights to OUT_DIR/rank<r>.pt; MODE ``fail``: rank 1
#: raises after its first epoch; ``stop``: rank 0 raises after epoch 1 (checkpoint written), an
#: interruption to resume from.
ENTRY = """
import os
import sys
from pathlib import Path

import torch

import autoseg.training.setup as setup
from autoseg.cli import main
from autoseg.training.distributed import bare_module

mode, out, rank = sys.argv[1], Path(sys.argv[2]), int(os.environ["RANK"])
built, build_parts, train_fold = [], setup.build_parts, setup.train_fold


def keep_parts(*args, **kwargs):
    built.append(build_parts(*args, **kwargs))
    return built[-1]


def inject(state, record):
    if mode == "fail" and rank == 1:
        raise RuntimeError("injected failure on rank 1")
    if mode == "stop" and rank == 0 and state.epoch == 2:
        raise RuntimeError("interrupted after epoch 1")


setup.build_parts = keep_parts
setup.train_fold = lambda *a, **k: train_fold(*a, **k, extra_callbacks=(inject,))
code = main(sys.argv[3:])
if code == 0:
    torch.save(bare_module(built[0].network).state_dict(), out / f"rank{rank}.pt")
raise SystemExit(code)
"""

SCHEDULE = fast_overrides(epochs=3, iterations_per_epoch=4, final_validation=False, deterministic=True)


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An easy one-class dataset planned with a 16^3 patch, batch 2, per-sample Dice."""
    root = tmp_path_factory.mktemp("ddp")
    spec = easy_spec(8, seed=3)
    raw = generate_dataset(root / "raw" / "Dataset930_Ddp", spec)
    pre = root / "pre"
    plan = ["plan", str(raw), f"paths.preprocessed={pre}", "-c", "3d_fullres", "--num-workers", "1"]
    assert main([*plan, "3d_fullres.patch_size=[16,16,16]", "3d_fullres.batch_dice=false"]) == 0
    return raw, pre


def cli(args: list[str]) -> int:
    """``autoseg ARGS`` in a fresh process with one torch thread, as each rank has (as users run it).
    In-process, this module's tests were where the full suite's pytest process died with SIGSEGV
    after earlier tests had made many OpenVINO Cores (now one per process: inference.backends)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "autoseg", *args], env=env, timeout=600).returncode


def train_args(planned: tuple[Path, Path], results: Path) -> list[str]:
    raw, pre = planned
    return ["train", str(raw), "3d_fullres", "0", f"paths.preprocessed={pre}", f"paths.results={results}"]


def fold_folder(planned: tuple[Path, Path], results: Path) -> Path:
    return results / planned[0].name / "default" / "3d_fullres" / "fold_0"


def torchrun(script: Path, args: list[str], timeout: float = 150) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, str(script), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def rank_of(rank: int, world: int) -> DistributedContext:
    return DistributedContext(
        rank=rank, local_rank=rank, world_size=world, backend="gloo", local_world_size=world
    )


def test_batch_share_splits_the_global_batch():
    def shares(batch: int, world: int) -> list[tuple[int, int]]:
        return [batch_share(batch, r, world) for r in range(world)]

    assert shares(4, 2) == [(0, 2), (2, 4)]
    assert shares(5, 2) == [(0, 3), (3, 5)]
    assert shares(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert shares(2, 1) == [(0, 2)]
    assert describe_split(4, 2) == "global batch 4 over 2 ranks: 2 + 2"
    assert "3 + 2 (uneven" in describe_split(5, 2)
    with pytest.raises(ValueError, match="batch size 2 < 4 ranks"):
        batch_share(2, 0, 4)


def test_context_from_torchrun_variables():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not DistributedContext.from_env({}, cpu).enabled
    assert not DistributedContext.from_env({"WORLD_SIZE": "1", "RANK": "0"}, cuda).enabled
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    ctx = DistributedContext.from_env(env, cuda, 60)
    assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.local_world_size) == (3, 1, 4, 2)
    assert (ctx.backend, ctx.timeout_s, ctx.is_main, ctx.enabled) == ("nccl", 60, False, True)
    env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    elastic = {
        "TORCHELASTIC_RESTART_COUNT": "2",
        "TORCHELASTIC_MAX_RESTARTS": "3",
        "TORCHELASTIC_RUN_ID": "j",
    }
    second_node = DistributedContext.from_env({**env, **elastic}, cpu)
    assert (second_node.backend, second_node.local_rank, second_node.restart_count) == ("gloo", 0, 2)
    assert second_node.elastic_run_id == "j"
    assert DistributedContext.from_env({**env, "TORCHELASTIC_RUN_ID": "j"}, cpu).elastic_run_id is None
    with pytest.raises(
        ValueError, match="LOCAL_RANK, LOCAL_WORLD_SIZE not set: start the ranks with torchrun"
    ):
        DistributedContext.from_env({"WORLD_SIZE": "2", "RANK": "1"}, cpu)  # never the global rank
    assert rank_device(rank_of(1, 2), cpu) == cpu
    with pytest.raises(ValueError, match="cuda:LOCAL_RANK"):
        rank_device(ctx, torch.device("cuda", 1))
    with pytest.raises(ValueError, match="do not fit"):
        rank_of(2, 2)


def test_resume_note_only_for_another_world_size():
    assert resume_note({"world_size": 2}, rank_of(0, 2)) is None
    assert resume_note({}, DistributedContext()) is None  # checkpoints from before DDP: one rank
    assert "trained on 2 rank(s) with 1" in str(resume_note({"world_size": 2}, DistributedContext()))


def test_rank_shares_rebuild_the_global_batch(planned):
    """Each rank builds its slice of the same global batch, augmentation and oversampling included."""
    _, pre = planned
    folder = pre / planned[0].name / "default" / "3d_fullres"
    cases = PreprocessedCases(folder, sorted(p.stem for p in folder.glob("*.json")))
    augmenter = Augmenter((16, 16, 16), num_channels=1)
    for augment in (None, augmenter):
        crop = augmenter.crop_size if augment is not None else None
        sampler = PatchSampler(cases, (16, 16, 16), 3, oversample_foreground=0.67, crop_size=crop)
        whole = BatchDataset(sampler, augment, seed=4)[7]
        parts = [BatchDataset(sampler, augment, seed=4, samples=s)[7] for s in [(0, 2), (2, 3)]]
        for key in ("image", "target", "forced"):
            assert torch.equal(torch.cat([p[key] for p in parts]), whole[key]), key
        assert whole["forced"].tolist() == [False, True, True]
    with pytest.raises(ValueError, match="samples"):
        BatchDataset(sampler, None, seed=4, samples=(2, 4))


@pytest.fixture(scope="module")
def two_ranks(planned, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-rank gloo run of SCHEDULE under torchrun; its folder holds rank0.pt, rank1.pt and ddp/."""
    out = tmp_path_factory.mktemp("two_ranks")
    script = out / "entry.py"
    script.write_text(ENTRY)
    done = torchrun(
        script, ["save", str(out), *train_args(planned, out / "ddp"), "--device", "cpu", *SCHEDULE]
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_two_ranks_train_in_lockstep(planned, two_ranks, tmp_path):
    """2 gloo ranks: identical weights on both afterwards, the loss fell, rank 0's checkpoint holds
    those weights, and the run matches one process on the whole batch (per-sample Dice)."""
    rank0, rank1 = (torch.load(two_ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and len(rank0) > 10
    for key, tensor in rank0.items():
        assert torch.equal(tensor, rank1[key]), key
    fold = fold_folder(planned, two_ranks / "ddp")
    final = load_checkpoint(fold / "checkpoint_final.pt")
    assert final["world_size"] == 2
    for key, tensor in rank0.items():
        assert torch.equal(tensor, final["network"][key]), key
    losses = [r["train_loss"] for r in json.loads((fold / "history.json").read_text())]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    log = (fold / "training_log.txt").read_text()
    assert "x 2 ranks (gloo)" in log and "global batch 2 over 2 ranks: 1 + 1" in log
    assert log.count("starting epoch 0") == 1  # rank 0 alone writes
    # the same schedule in one process on the whole batch of 2 ends at (almost) the same weights
    single = tmp_path / "single"
    assert cli([*train_args(planned, single), "--device", "cpu", *SCHEDULE]) == 0
    alone = load_checkpoint(fold_folder(planned, single) / "checkpoint_final.pt")["network"]
    for key, tensor in rank0.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, alone[key], rtol=1e-3, atol=1e-4, msg=key)


def test_resume_on_two_ranks_is_exact(planned, two_ranks, tmp_path):
    """Interrupted after epoch 1 and resumed on 2 ranks: the same weights as the straight 2-rank run."""
    script = tmp_path / "entry.py"
    script.write_text(ENTRY)
    args = [*train_args(planned, tmp_path / "res"), "--device", "cpu", *SCHEDULE]
    stopped = torchrun(script, ["stop", str(tmp_path), *args])
    assert stopped.returncode != 0 and "interrupted after epoch 1" in stopped.stderr
    fold = fold_folder(planned, tmp_path / "res")
    assert load_checkpoint(fold / "checkpoint_latest.pt")["state"]["epoch"] == 2
    resumed = torchrun(script, ["save", str(tmp_path), *args, "--resume"])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "WARNING" not in (fold / "training_log.txt").read_text()
    straight = load_checkpoint(fold_folder(planned, two_ranks / "ddp") / "checkpoint_final.pt")["network"]
    final = load_checkpoint(fold / "checkpoint_final.pt")["network"]
    for key, tensor in straight.items():
        assert torch.equal(tensor, final[key]), key


def test_failing_rank_ends_the_job(planned, tmp_path):
    """Rank 1 raises after its first epoch: the job exits non-zero, soon, with the error shown."""
    script = tmp_path / "entry.py"
    script.write_text(ENTRY)
    start = time.perf_counter()
    done = torchrun(
        script,
        ["fail", str(tmp_path), *train_args(planned, tmp_path / "res"), "--device", "cpu", *SCHEDULE],
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in output
    assert "rank 1 of 2 failed" in output
    assert elapsed < 120
    assert not (tmp_path / "rank0.pt").exists()


def test_gpus_flag_launches_torchrun_and_resume_on_one_rank_warns(planned, tmp_path):
    """``--gpus 2 --device cpu`` runs 2 gloo ranks; resuming that run in one process continues it with a
    warning in the log."""
    results = tmp_path / "res"
    args = [*train_args(planned, results), "--device", "cpu", *SCHEDULE, "trainer.epochs=2"]
    assert cli([*args, "--gpus", "2"]) == 0
    fold = fold_folder(planned, results)
    assert load_checkpoint(fold / "checkpoint_final.pt")["world_size"] == 2
    assert cli([*args, "trainer.epochs=3", "--resume"]) == 0
    history = json.loads((fold / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]
    log = (fold / "training_log.txt").read_text()
    assert "WARNING: resuming a run trained on 2 rank(s) with 1" in log
    assert load_checkpoint(fold / "checkpoint_final.pt")["world_size"] == 1


def test_gpus_flag_errors_are_clear(planned, tmp_path, capsys):
    args = [*train_args(planned, tmp_path / "res"), *SCHEDULE]
    assert main([*args, "--device", "cpu", "--gpus", "0"]) == 1
    assert "give a count" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--gpus", "2"]) == 1
        assert "add --device cpu" in capsys.readouterr().err
    assert main([*args, "--device", "cpu", "--parallel", "2"]) == 1
    assert "go with all-folds" in capsys.readouterr().err
