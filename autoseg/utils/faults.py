"""Fault-injection points: a process can be made to kill itself at a chosen moment (tests only).

``AUTOSEG_KILL_AT=POINT:N`` makes the process SIGKILL itself the N-th time it reaches ``POINT``
(``N`` defaults to 1). The points are:

- ``write``: a file written through :func:`autoseg.utils.files.atomic_path`, after its data is
  on disk and before it is renamed over the target (the worst moment for a crash);
- ``iteration``: a training iteration, after the optimizer step;
- ``case``: a case of ``autoseg predict`` or of preprocessing, before it is written.

The fault-injection suite (``tests/faults/``, ``benchmarks/faults.py``) uses it to interrupt
``autoseg plan``, ``train`` and ``predict`` at reproducible moments. Unset, it costs one dict
lookup per point.

Example:
    >>> import os
    >>> os.environ.pop(KILL_ENV, None) and None
    >>> reached("write")  # no kill requested: returns
"""

from __future__ import annotations

import os
import signal
import sys

KILL_ENV = "AUTOSEG_KILL_AT"
POINTS = ("write", "iteration", "case")
_counts: dict[str, int] = {}


def reached(point: str, detail: str = "") -> None:
    """Count a pass through ``point``; SIGKILL this process when ``AUTOSEG_KILL_AT`` asks for it.

    Before the kill, one line on stderr says where (``detail``: e.g. the file being written).
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(nth or 1):
        sys.stderr.write(f"fault injection: SIGKILL at {point}:{_counts[point]} {detail}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
