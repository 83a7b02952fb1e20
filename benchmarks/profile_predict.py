#!/usr/bin/env python
"""Where ``autoseg predict`` spends its time, per stage: one in-process run with timers around each stage.

Runs ``autoseg predict ARGS...`` in this process (the CLI's own ``main``) with wall-clock timers
wrapped around the functions of each stage, in whichever thread they run (reading and
preprocessing run in a background thread, export in another, the network in the main one):

==================  ============================================================================
stage               what is timed
==================  ============================================================================
load model          building the predictors (checkpoints, exports of a backend, compilation)
read                ``_load_channels`` (the image files; DICOM series are not timed)
normalisation       ``normalize`` inside ``preprocess_case``
resampling in       ``resample_data_to_shape`` inside ``preprocess_case``
preprocess, other   the rest of ``preprocess_case`` (transpose, crop)
forward passes      ``BatchSizer.forward`` (every network call of the sliding window)
accumulation        ``_predict_stack`` minus its forward passes (tile extraction, flips, weighting)
activation          ``export_ready`` / ``compact_output`` minus the sliding window (softmax or
                    sigmoid, the torch resampler when it runs on the device)
resampling out      ``revert_preprocessing`` or ``native_segmentation`` (back to the native spacing)
export              ``export_prediction`` minus ``revert_preprocessing`` (argmax, post-processing,
                    writing the mask)
==================  ============================================================================

Stages in the background threads overlap with the network, so the per-stage seconds can add up
to more than the wall time. Printed: a table (seconds, share of the wall, calls) and the wall and
CPU seconds of the whole run (``--json-out FILE`` writes them as JSON).

Usage::

    python benchmarks/profile_predict.py [--json-out FILE] -- -i INPUT -o OUTPUT -m MODEL [predict options]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = (
    "load model",
    "read",
    "normalisation",
    "resampling in",
    "preprocess, other",
    "forward passes",
    "accumulation",
    "activation",
    "resampling out",
    "export",
)


class StageTimer:
    """Seconds and calls per stage; nested stages are subtracted from their parent (``exclusive``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()
        self._lock = threading.Lock()

    def wrap(
        self, stage: str, fn: Callable[..., Any], parent: str | None = None, only_inside: bool = False
    ) -> Callable[..., Any]:
        """``fn`` timed as ``stage``; its time is taken off ``parent``'s when it runs inside ``parent``
        (in the same thread). ``only_inside``: untimed elsewhere (the resampling of ``preprocess_case``
        is "resampling in", the same function called while reverting is not)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._local.__dict__.setdefault("stack", [])
            if only_inside and parent not in stack:
                return fn(*args, **kwargs)
            stack.append(stage)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                stack.pop()
                with self._lock:
                    self.seconds[stage] += dt
                    self.calls[stage] += 1
                    if parent is not None and parent in stack:
                        self.seconds[parent] -= dt

        return timed

    def patch(
        self, module: str, name: str, stage: str, parent: str | None = None, only: bool = False
    ) -> bool:
        """Replace ``module.name`` (a function or ``Class.method``) by its timed version; False if absent."""
        try:
            owner: Any = importlib.import_module(module)
        except ImportError:
            return False
        *path, attr = name.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, attr):
            return False
        setattr(owner, attr, self.wrap(stage, getattr(owner, attr), parent, only))
        return True


def install(timer: StageTimer) -> list[str]:
    """Wrap every stage's functions; the names that were not found (the code moved) are returned."""
    targets = [
        # inner stages first: a wrapper must sit inside its parent's wrapper to subtract from it
        ("autoseg.preprocessing.preprocess", "normalize", "normalisation", "preprocess, other"),
        (
            "autoseg.preprocessing.preprocess",
            "resample_data_to_shape",
            "resampling in",
            "preprocess, other",
            1,
        ),
        ("autoseg.inference.predictor", "preprocess_case", "preprocess, other", None),
        ("autoseg.inference.batching", "BatchSizer.forward", "forward passes", "accumulation"),
        ("autoseg.inference.sliding_window", "_predict_stack", "accumulation", "activation"),
        ("autoseg.inference.predictor", "ConfigurationPredictor.export_ready", "activation", None),
        ("autoseg.inference.predictor", "ConfigurationPredictor.compact_output", "activation", None),
        ("autoseg.inference.writer", "revert_preprocessing", "resampling out", "export"),
        ("autoseg.inference.writer", "native_segmentation", "resampling out", "export"),  # large volumes
        ("autoseg.inference.run", "export_prediction", "export", None),
        ("autoseg.inference.inputs", "_load_channels", "read", None),  # NIfTI/NRRD/MHA inputs
        ("autoseg.inference.predictor", "ConfigurationPredictor.__init__", "load model", None),
    ]
    return [f"{t[0]}.{t[1]}" for t in targets if not timer.patch(t[0], t[1], t[2], t[3], bool(t[4:]))]


def report(timer: StageTimer, wall: float, cpu: float) -> dict[str, Any]:
    """Print the table; the numbers as a dict."""
    rows = {
        stage: {"seconds": round(timer.seconds.get(stage, 0.0), 3), "calls": timer.calls.get(stage, 0)}
        for stage in STAGES
    }
    print(f"{'stage':20s} {'seconds':>9s} {'of wall':>8s} {'calls':>6s}")
    for stage, r in rows.items():
        print(f"{stage:20s} {r['seconds']:9.2f} {100 * r['seconds'] / wall:7.1f}% {r['calls']:6d}")
    print(f"{'wall (whole run)':20s} {wall:9.2f}\n{'CPU (process)':20s} {cpu:9.2f}")
    return {"stages": rows, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("predict_args", nargs=argparse.REMAINDER, help="-- then autoseg predict's arguments")
    args = ap.parse_args(argv)
    rest = args.predict_args[1:] if args.predict_args[:1] == ["--"] else args.predict_args
    if not rest:
        ap.error("give autoseg predict's arguments after --")
    timer = StageTimer()
    missing = install(timer)
    for name in missing:
        print(f"note: {name} not found; its stage stays at 0")
    from autoseg.cli import main as autoseg_main

    t0, c0 = time.perf_counter(), time.process_time()
    rc = autoseg_main(["predict", *rest])
    result = report(timer, time.perf_counter() - t0, time.process_time() - c0)
    result.update(returncode=rc, predict_args=rest, missing=missing)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
