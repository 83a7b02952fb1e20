"""One ``autoseg train`` per fold folder: a lock file holding the owner's pid and host.

The lock is an OS advisory lock (``flock``) on ``<fold>/train.lock``, so it disappears with its
process however that process ends; the file itself records who holds it (pid, host, start time) for
the message a second run gets. A lock file left behind by a process that is gone (killed, crashed,
power cut) is taken over, and the log says so.

Example:
    >>> with fold_lock(Path("/results/Dataset001/default/3d_fullres/fold_0")):  # doctest: +SKIP
    ...     train()
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoseg.utils.files import pid_alive, remove_stale_temporaries

LOCK_NAME = "train.lock"
log = logging.getLogger("autoseg.train")


class FoldLockedError(RuntimeError):
    """Another process is training the same fold folder."""


def _holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        data = json.loads(os.read(fd, 4096) or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that left no record"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {started}"


def _acquire(path: Path) -> int:
    """An fd of ``path`` holding its flock (the file may have been replaced meanwhile: retry)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FoldLockedError(
                f"{path.parent}: another `autoseg train` is training this fold ({_describe(holder)}); wait "
                f"for it to finish or stop it. If that process is on another machine that crashed, delete "
                f"{path}"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # its owner removed it as we opened it: lock the new one


@contextmanager
def fold_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/train.lock`` for the duration; a stale lock file is taken over with a warning.

    Raises:
        FoldLockedError: a live process holds the lock (its pid, host and start time are named).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _acquire(path)
    try:
        stale = _holder(fd)
        if stale:
            alive = stale.get("host") == socket.gethostname() and pid_alive(int(stale.get("pid", -1)))
            log.warning(
                "taking over the lock %s left by %s, which %s",
                path,
                _describe(stale),
                "no longer holds it" if alive else "is no longer running",
            )
        remove_stale_temporaries(folder)  # what the dead run left half-written (each logged)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)  # before unlocking: a waiter then locks a fresh file
        finally:
            os.close(fd)
