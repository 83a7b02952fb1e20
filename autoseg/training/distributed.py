"""Data-parallel training across processes (DistributedDataParallel), one GPU or CPU share per rank.

The launcher (``torchrun``, or ``autoseg train ... --gpus N`` which starts it) sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; the CLI reads them once into a
:class:`DistributedContext` (:meth:`DistributedContext.from_env`) and passes that down. Nothing
below the CLI reads the environment.

How a run is split (W ranks, global batch B from the plan):

- **Batches.** Every rank draws the whole global batch ``k`` from ``(seed, stream, k)``, exactly as
  a single process does, and builds only its own share of it (:func:`batch_share`: ``B // W``
  samples, the first ``B % W`` ranks one more). So the sequence of global batches, foreground
  oversampling included, does not depend on W: the ranks see different patches, a W=1 run is
  unchanged, and a run resumed with another number of ranks sees the same data.
- **Gradients** are averaged over the ranks by DDP. With an uneven split each rank's mean loss
  counts equally, so the samples of the smaller shares weigh slightly more than in one process.
- **Batch Dice** (``DiceCELoss(batch_dice=True)``) is computed over each rank's share, not over the
  global batch (nnU-Net all-gathers the Dice terms; not done here): with 1 - 2 samples per rank it
  is close to a per-sample Dice.
- **Validation epochs:** each rank scores its share of every validation batch; the pseudo-Dice
  counts (tp, fp, fn) are summed and the losses averaged over the ranks, so every rank logs and
  decides (best checkpoint, early stop) on the same numbers.
- Rank 0 alone writes: log, TensorBoard, progress.png, checkpoints and the final validation.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "DistributedContext",
    "bare_module",
    "barrier",
    "batch_share",
    "describe_split",
    "from_main",
    "process_group",
    "rank_device",
    "report_failure",
    "sum_over_ranks",
    "unwrap_ddp",
    "wrap_ddp",
]

log = logging.getLogger("autoseg.train")
T = TypeVar("T")

DEFAULT_TIMEOUT_MIN = 30.0


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: global rank, 0..world_size-1 (rank 0 logs, checkpoints and validates).
        local_rank: rank on this node; with CUDA, the GPU index this rank uses.
        world_size: number of processes; 1 means no process group at all.
        local_world_size: number of processes on this node (they share its CPUs).
        backend: ``nccl`` (CUDA) or ``gloo`` (CPU); None for a single process.
        timeout_s: how long a collective waits for the other ranks before failing.
        restart_count: how often torchrun restarted this node's workers after a failure.
        elastic_run_id: torchrun's run id (``--rdzv-id``) when it may restart the workers
            (``--max-restarts`` > 0), else None: a restarted job then resumes from the fold's latest
            checkpoint (:func:`autoseg.training.setup.resume_after_restart`).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None
    local_world_size: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_MIN * 60
    restart_count: int = 0
    elastic_run_id: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size or not 0 <= self.local_rank < self.local_world_size:
            raise ValueError(
                f"rank {self.rank} / local rank {self.local_rank} do not fit world size {self.world_size}"
            )
        if self.world_size > 1 and self.backend not in ("nccl", "gloo"):
            raise ValueError(f"{self.world_size} ranks need backend nccl or gloo, got {self.backend!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout must be > 0 s, got {self.timeout_s}")

    @property
    def enabled(self) -> bool:
        """Whether there is more than one rank (a process group, DDP)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes."""
        return self.rank == 0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_MIN * 60
    ) -> DistributedContext:
        """The context torchrun describes in ``env`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
        ``LOCAL_WORLD_SIZE``, ``TORCHELASTIC_RESTART_COUNT``, ``TORCHELASTIC_MAX_RESTARTS``,
        ``TORCHELASTIC_RUN_ID``).

        Without ``WORLD_SIZE`` (or with 1) it is a single process. The backend is ``nccl`` for a CUDA
        ``device``, ``gloo`` otherwise. The device index comes from ``LOCAL_RANK``, never from the
        global rank (on the second node of two with 4 GPUs each, rank 5 uses ``cuda:1``): a launcher
        that does not set ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` is refused.

        Raises:
            ValueError: several ranks without ``RANK``, ``LOCAL_RANK`` or ``LOCAL_WORLD_SIZE``.
        """
        world = int(env.get("WORLD_SIZE", "1"))
        restarts = int(env.get("TORCHELASTIC_RESTART_COUNT", "0"))
        elastic = (
            env.get("TORCHELASTIC_RUN_ID") if int(env.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 else None
        )
        if world <= 1:
            return cls(timeout_s=timeout_s, restart_count=restarts, elastic_run_id=elastic)
        missing = [k for k in ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE") if k not in env]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={world} but {', '.join(missing)} not set: start the ranks with torchrun (which "
                "sets them), e.g. torchrun --nnodes N --nproc-per-node G -m autoseg train ..."
            )
        return cls(
            rank=int(env["RANK"]),
            local_rank=int(env["LOCAL_RANK"]),
            world_size=world,
            backend="nccl" if device.type == "cuda" else "gloo",
            local_world_size=int(env["LOCAL_WORLD_SIZE"]),
            timeout_s=timeout_s,
            restart_count=restarts,
            elastic_run_id=elastic,
        )


def rank_device(ctx: DistributedContext, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` under DDP on CUDA, else ``device`` itself.

    Raises:
        ValueError: a fixed GPU index (``cuda:1``) with several ranks: each rank picks its own.
    """
    if not ctx.enabled or device.type != "cuda":
        return device
    if device.index is not None:
        raise ValueError(
            f"--device {device}: with {ctx.world_size} ranks each rank uses cuda:LOCAL_RANK; pass --device "
            "cuda (choose GPUs with --gpus 0,1 or CUDA_VISIBLE_DEVICES)"
        )
    if ctx.local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"local rank {ctx.local_rank} has no GPU: only {torch.cuda.device_count()} visible on this node"
        )
    return torch.device("cuda", ctx.local_rank)


@contextmanager
def process_group(ctx: DistributedContext, device: torch.device) -> Iterator[None]:
    """Join the process group for the block (nothing for a single process).

    ``init_process_group`` reads ``MASTER_ADDR``/``MASTER_PORT`` (``env://``); every collective
    fails after ``ctx.timeout_s`` instead of waiting forever for a dead peer. The group is destroyed
    after a normal exit; after an exception it is left to the process's end (another rank may be
    blocked in a collective, and torchrun stops the job anyway).
    """
    if not ctx.enabled:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=ctx.backend,
        rank=ctx.rank,
        world_size=ctx.world_size,
        timeout=dt.timedelta(seconds=ctx.timeout_s),
    )
    yield
    dist.destroy_process_group()


def batch_share(batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Samples ``[start, stop)`` of a global batch of ``batch_size`` that ``rank`` builds.

    ``batch_size // world_size`` samples per rank, the first ``batch_size % world_size`` ranks one more.

    Raises:
        ValueError: fewer samples than ranks.

    Example:
        >>> [batch_share(5, rank, 2) for rank in range(2)]
        [(0, 3), (3, 5)]
    """
    if batch_size < world_size:
        raise ValueError(
            f"batch size {batch_size} < {world_size} ranks: every rank needs at least one sample; use "
            "fewer processes or a larger trainer.batch_size"
        )
    base, extra = divmod(batch_size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def describe_split(batch_size: int, world_size: int) -> str:
    """One line on how the global batch is split, e.g. ``global batch 5 over 2 ranks: 3 + 2 ...``."""
    shares = [batch_share(batch_size, rank, world_size) for rank in range(world_size)]
    sizes = [stop - start for start, stop in shares]
    note = "" if len(set(sizes)) == 1 else " (uneven: gradients are averaged per rank, not per sample)"
    return f"global batch {batch_size} over {world_size} ranks: {' + '.join(map(str, sizes))}{note}"


def wrap_ddp(network: nn.Module, ctx: DistributedContext, device: torch.device) -> nn.Module:
    """``network`` in DistributedDataParallel (rank 0's weights broadcast), or itself for one process.

    Every parameter must get a gradient each step (``find_unused_parameters=False``); the
    deep-supervision loss keeps zero-weighted heads in the graph for that.
    """
    if not ctx.enabled:
        return network
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=ids, find_unused_parameters=False)


def unwrap_ddp(network: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (possibly compiled), or ``network`` itself."""
    return network.module if isinstance(network, DistributedDataParallel) else network


def bare_module(network: nn.Module) -> nn.Module:
    """The plain module, without DDP or ``torch.compile`` wrappers (its state_dict has plain keys)."""
    inner = unwrap_ddp(network)
    return getattr(inner, "_orig_mod", inner)


def sum_over_ranks(tensor: torch.Tensor, ctx: DistributedContext, device: torch.device) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (itself for one process), on its own device.

    ``device`` is where the collective runs (the rank's GPU for NCCL).
    """
    if not ctx.enabled:
        return tensor
    work = tensor.detach().to(device, copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def from_main(obj: T, ctx: DistributedContext) -> T:
    """Rank 0's ``obj`` on every rank (pickled; tensors in it should be on the CPU)."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def barrier(ctx: DistributedContext) -> None:
    """Wait until every rank got here (nothing for one process)."""
    if ctx.enabled:
        dist.barrier()


def report_failure(ctx: DistributedContext, error: BaseException) -> None:
    """Print the exception being handled (with this rank) to stderr and record it for torchrun.

    Call it from an ``except`` block. torchrun then stops the other ranks (their collectives would
    otherwise wait for this one until the timeout) and names this rank's error in its summary.
    """
    print(
        f"autoseg: rank {ctx.rank} of {ctx.world_size} failed:\n{traceback.format_exc()}",
        file=sys.stderr,
        flush=True,
    )
    from torch.distributed.elastic.multiprocessing.errors import get_error_handler

    get_error_handler().record_exception(error)  # the error file torchrun reads, when it set one
