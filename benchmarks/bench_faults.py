#!/usr/bin/env python
"""Fault injection and fuzzing at length: many seeded kill points and fuzzed inputs, tables for RESULTS.md.

The CI suite (``tests/faults/``) tries a handful; this script tries many, with the same driver:

* **kills**: ``autoseg plan``, ``train`` (CPU, deterministic) and ``predict`` on a tiny synthetic
  dataset are SIGKILLed at seeded points, either where the process kills itself
  (``AUTOSEG_KILL_AT=write:N`` before the N-th atomic rename, ``iteration:N``, ``case:N``) or at a
  seeded random time (``time:S``); each is rerun (``--resume`` for train when a checkpoint exists)
  and compared with an uninterrupted run (preprocessed arrays and JSON, weights, masks);
* **fuzz**: seeded byte flips and truncations of NIfTI (.nii.gz, .nii) and NRRD headers (through
  ``validate``, ``plan`` and ``predict``) and of DICOM files (through ``predict``), a timeout each;
* **results** (issue 21): ``find-best`` and ``export-model`` killed at seeded points on a validated
  results folder and rerun; byte flips and truncations of its validation masks, probabilities,
  summaries, checkpoints, selection.json and history.json through find-best, ensemble, evaluate,
  export-model and report (a clean error must name the damaged file).

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench_faults.py --long --seed 0
    PYTHONPATH=. python benchmarks/bench_faults.py --kills-per-stage 4 --fuzz-per-kind 5

Everything is written under ``benchmarks/work/faults`` (``--work``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from tests.faults import fuzz
from tests.faults.driver import (
    KillResult,
    Scenario,
    autoseg,
    export_args,
    kill_export,
    kill_find_best,
    snapshot_archive,
    snapshot_predictions,
    snapshot_preprocessed,
    snapshot_selection,
    snapshot_weights,
    table,
)
from tests.faults.results import validated_results


def kill_points(stage: str, count: int, rng: random.Random, seconds: float) -> list[str]:
    """``count`` seeded kill points for ``stage``: self-kills at counted points and timed kills."""
    pools = {
        "plan": [f"write:{n}" for n in range(1, 20)] + [f"case:{n}" for n in range(1, 5)],
        "train": [f"write:{n}" for n in range(1, 11)] + [f"iteration:{n}" for n in range(1, 7)],
        "predict": [f"write:{n}" for n in range(1, 5)] + ["case:1", "case:2"],
        "find-best": [f"write:{n}" for n in range(1, 16)],
        "export-model": [f"write:{n}" for n in range(1, 4)],
    }
    counted = rng.sample(pools[stage], min(len(pools[stage]), count - count // 4))
    # timed kills between half the uninterrupted run's time (imports done) and its end
    timed = [f"time:{rng.uniform(0.5 * seconds, 0.98 * seconds):.2f}" for _ in range(count // 4)]
    return counted + timed


def run_kills(
    scn: Scenario, reference: dict, count: int, seed: int, seconds: dict[str, float]
) -> list[KillResult]:
    rng = random.Random(seed)
    results = []
    for stage in ("plan", "train", "predict"):
        for point in kill_points(stage, count, rng, seconds[stage]):
            tag = f"{stage}_{point.replace(':', '_').replace('.', '_')}"
            result = getattr(scn, f"kill_{stage}")(tag, point, reference[stage])
            print(
                f"{stage:8s} {point:14s} killed={result.killed!s:5s} "
                f"identical={result.identical!s:5s} {result.where}"
            )
            results.append(result)
            shutil.rmtree(scn.root / tag, ignore_errors=True)
    return results


def run_result_kills(scn: Scenario, count: int, seed: int, seconds: dict[str, float]) -> list[KillResult]:
    """find-best and export-model killed at seeded points (issue 21), compared with uninterrupted runs."""
    rng = random.Random(seed + 1)
    model = validated_results(scn, scn.root / "selected" / "results", select=True)
    archive = scn.root / "selected" / "model.zip"
    code, err = autoseg(export_args(scn, model.parent, archive))
    assert code == 0, err[-2000:]
    selection, exported = snapshot_selection(model), snapshot_archive(archive)
    results = []
    for stage in ("find-best", "export-model"):
        for point in kill_points(stage, count, rng, seconds[stage]):
            tag = f"{stage}_{point.replace(':', '_').replace('.', '_')}"
            if stage == "find-best":
                result = kill_find_best(scn, tag, point, selection)
            else:
                result = kill_export(scn, tag, point, exported, model)
            print(f"{stage:12s} {point:14s} killed={result.killed!s:5s} identical={result.identical!s:5s}")
            results.append(result)
            shutil.rmtree(scn.root / tag, ignore_errors=True)
    return results


def result_seconds(scn: Scenario) -> dict[str, float]:
    """Uninterrupted find-best and export-model times on a validated results folder."""
    from tests.faults.driver import find_best_args

    model = validated_results(scn, scn.root / "timing" / "results")
    seconds = {}
    for stage, argv in (
        ("find-best", find_best_args(scn, model.parent)),
        ("export-model", export_args(scn, model.parent, scn.root / "timing" / "m.zip")),
    ):
        start = time.perf_counter()
        code, err = autoseg(argv)
        seconds[stage] = time.perf_counter() - start
        assert code == 0, err[-2000:]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--long", action="store_true", help="12 kill points per stage, 25 fuzzed inputs per kind"
    )
    parser.add_argument("--kills-per-stage", type=int, default=4)
    parser.add_argument("--fuzz-per-kind", type=int, default=5)
    parser.add_argument("--fuzz-timeout", type=float, default=120.0, help="seconds per fuzzed input")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/faults"))
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument(
        "--results-only",
        action="store_true",
        help="only the issue-21 part: find-best/export-model kills and damaged results folders",
    )
    args = parser.parse_args()
    kills, per_kind = (12, 25) if args.long else (args.kills_per_stage, args.fuzz_per_kind)
    shutil.rmtree(args.work, ignore_errors=True)
    scn = Scenario.create(args.work / "scenario", seed=5)
    seconds = {}
    for stage, argv in (
        ("plan", scn.plan("ref")),
        ("train", scn.train("ref")),
        ("predict", scn.predict("ref")),
    ):
        start = time.perf_counter()
        code, err = autoseg(argv)
        seconds[stage] = time.perf_counter() - start
        assert code == 0, err[-2000:]
    reference = {
        "plan": snapshot_preprocessed(scn.preprocessed("ref")),
        "train": snapshot_weights(scn.fold("ref") / "checkpoint_final.pt"),
        "predict": snapshot_predictions(scn.predictions("ref")),
    }
    print(f"uninterrupted runs: {', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())}")
    results = [] if args.results_only else run_kills(scn, reference, kills, args.seed, seconds)
    seconds.update(result_seconds(scn))
    results += run_result_kills(scn, kills, args.seed, seconds)
    base = fuzz.base_files(args.work / "fuzz" / "base")
    cases = fuzz.make_cases(base, args.work / "fuzz" / "cases", per_kind, seed=args.seed)
    start = time.perf_counter()
    fuzzed = (
        []
        if args.results_only
        else fuzz.run_all(fuzz.jobs(cases, args.work / "fuzz" / "work", scn.model()), args.fuzz_timeout)
    )
    selected = scn.root / "selected" / "results" / scn.raw.name
    overrides = [f"paths.preprocessed={scn.root / 'ref' / 'pre'}", "num_folds=2"]
    damaged = fuzz.artifact_jobs(
        scn.raw, selected, overrides, args.work / "fuzz" / "results", per_kind, args.seed
    )
    fuzzed += fuzz.run_all(damaged, args.fuzz_timeout)
    fuzz_seconds = time.perf_counter() - start
    for label, outcome, message in fuzzed:
        print(f"{outcome:9s} {label[:70]:70s} {message[:150]}")
    print("\n## Kill points\n\n" + table(results))
    print(f"\n## Fuzzed inputs ({fuzz_seconds:.0f} s)\n\n" + fuzz.table(fuzzed))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(
            json.dumps(
                {
                    "kills": [r.__dict__ for r in results],
                    "fuzz": [{"input": a, "outcome": b, "message": c} for a, b, c in fuzzed],
                    "reference_seconds": seconds,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
