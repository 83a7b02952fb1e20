"""How many worker processes fit in the machine's memory: fewer, with a log line, rather than swapping.

Each fingerprint or preprocessing worker holds one case at a time (:func:`autoseg.utils.parallel.
parallel_map`). What one case costs is estimated from its shapes: the native images (float32 per
channel) and label, and the cropped, normalised and resampled copies the steps make
(:func:`case_memory_bytes`). The largest case can land on every worker at once, so the worker count
is lowered until ``workers x (largest case + a worker's own overhead)`` fits in a fraction of the
memory available now (``MemAvailable`` of /proc/meminfo; psutil where that is missing).

Example:
    >>> workers_that_fit(8, [2 * 2**30], "preprocess", available=6 * 2**30)
    2
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

__all__ = ["WORKER_OVERHEAD_BYTES", "available_memory_bytes", "case_memory_bytes", "workers_that_fit"]

log = logging.getLogger(__name__)

WORKER_OVERHEAD_BYTES = 200 * 2**20  # a forked worker's own pages (imports touched, buffers)
USABLE_FRACTION = 0.8  # of MemAvailable: the rest for the parent, the page cache and the other users
COPIES = 3  # cropped, normalised and resampled float32 copies of the data at the larger of both grids
_MIB = 2**20


def available_memory_bytes() -> int | None:
    """The memory available to new work now: /proc/meminfo's MemAvailable, else psutil's; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def case_memory_bytes(
    shape_before_crop: Sequence[int],
    shape_after_crop: Sequence[int],
    spacing: Sequence[float],
    target_spacing: Sequence[float] | None,
    channels: int,
) -> int:
    """Estimated peak bytes of one case in a worker: native images and label, and the working copies.

    Args:
        shape_before_crop / shape_after_crop: the case's spatial shapes (the fingerprint's).
        spacing: its voxel spacing; ``target_spacing``: the configuration's (None: not resampled,
            e.g. while fingerprinting).
        channels: image channels.
    """
    before = int(np.prod(shape_before_crop, dtype=np.int64))
    after = int(np.prod(shape_after_crop, dtype=np.int64))
    resampled = after
    if target_spacing is not None:
        zoom = np.prod(np.asarray(spacing, float) / np.asarray(target_spacing, float))
        resampled = int(after * float(zoom))
    per_voxel = 4 * channels + 2  # float32 images and an int16-sized label
    return per_voxel * before + COPIES * per_voxel * max(after, resampled)


def workers_that_fit(
    requested: int,
    case_bytes: Sequence[int],
    what: str,
    available: int | None = None,
) -> int:
    """``requested`` workers, lowered (at least 1, logged) until the largest case on each fits in memory.

    Args:
        requested: the worker count asked for.
        case_bytes: per case, its estimate (:func:`case_memory_bytes`).
        what: the stage, for the log line (e.g. ``"preprocess 3d_fullres"``).
        available: bytes available (default: :func:`available_memory_bytes` now).
    """
    if requested <= 1 or not case_bytes:
        return requested
    available = available_memory_bytes() if available is None else available
    if available is None:
        return requested
    per_worker = max(case_bytes) + WORKER_OVERHEAD_BYTES
    fit = max(1, int(USABLE_FRACTION * available) // per_worker)
    if fit >= requested:
        return requested
    log.warning(
        "%s: %d workers would need about %d MiB (largest case ~%d MiB each) but %d MiB are available; "
        "using %d worker(s)",
        what,
        requested,
        requested * per_worker // _MIB,
        per_worker // _MIB,
        available // _MIB,
        fit,
    )
    return fit
