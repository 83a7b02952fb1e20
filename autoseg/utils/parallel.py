"""A process pool map with a progress bar, bounded memory and ordered results."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_num_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _init_worker() -> None:
    # Each worker handles one case at a time: ITK's own threads would only fight the
    # other workers for the same cores.
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T] | Iterable[T],
    num_workers: int | None = None,
    desc: str = "",
    max_in_flight: int | None = None,
) -> list[R]:
    """Apply ``fn`` to every item in worker processes and return the results in order.

    At most ``max_in_flight`` items (default: two per worker) are submitted at a time, so
    memory stays bounded by a few cases however large the dataset. With ``num_workers``
    0 or 1 everything runs in this process (easier to debug, no start-up cost).

    Args:
        fn: a picklable function of one argument.
        items: the work items.
        num_workers: processes to use; None means all cores.
        desc: the progress bar's label.
        max_in_flight: the most submitted-but-unfinished items.

    Example:
        >>> parallel_map(abs, [-1, 2, -3], num_workers=1)
        [1, 2, 3]
    """
    items = list(items)
    workers = default_num_workers() if num_workers is None else max(0, int(num_workers))
    workers = min(workers, len(items)) if items else 0
    show = bool(desc)
    if workers <= 1:
        return [fn(item) for item in tqdm(items, desc=desc, disable=not show, file=sys.stderr)]
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    limit = max_in_flight or 2 * workers
    results: dict[int, R] = {}
    with (
        ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init_worker) as pool,
        tqdm(total=len(items), desc=desc, disable=not show, file=sys.stderr) as bar,
    ):
        pending: dict[Future[R], int] = {}
        queue = iter(enumerate(items))
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < limit:
                nxt = next(queue, None)
                if nxt is None:
                    exhausted = True
                    break
                pending[pool.submit(fn, nxt[1])] = nxt[0]
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                results[pending.pop(fut)] = fut.result()
                bar.update(1)
    return [results[i] for i in range(len(items))]
