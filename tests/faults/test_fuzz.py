"""Seeded byte flips and truncations of NIfTI/NRRD headers and DICOM files, through validate, plan, predict.

Every input ends in a correct result or a clean error; never a traceback or a hang (a timeout per
input). ``benchmarks/bench_faults.py --long`` runs many more.
"""

from __future__ import annotations

from tests.faults import fuzz

PER_KIND = 2
TIMEOUT_S = 120


def test_fuzzed_inputs_end_in_a_result_or_a_clean_error(scenario, tmp_path):
    scn, _ = scenario
    base = fuzz.base_files(tmp_path / "base")
    cases = fuzz.make_cases(base, tmp_path / "cases", PER_KIND, seed=13)
    results = fuzz.run_all(fuzz.jobs(cases, tmp_path / "work", scn.model()), TIMEOUT_S)
    bad = [r for r in results if r[1] not in ("ok", "clean")]
    assert not bad, "\n".join(map(str, bad))
    assert len(results) == 3 * 2 * PER_KIND + 4 * PER_KIND
    assert any(outcome == "clean" for _, outcome, _ in results)


def test_damaged_results_checkpoints_and_json_end_in_a_result_or_a_clean_error_naming_the_file(
    scenario, tmp_path
):
    """Byte flips and truncations of a results folder's masks, probabilities, summaries, checkpoints,
    selection.json and history.json through find-best, ensemble, evaluate, export-model and report."""
    from tests.faults.results import validated_results

    scn, _ = scenario
    results = validated_results(scn, tmp_path / "valid" / "results", select=True)
    overrides = [f"paths.preprocessed={scn.root / 'ref' / 'pre'}", "num_folds=2"]
    jobs = fuzz.artifact_jobs(scn.raw, results, overrides, tmp_path / "work", 1, seed=21)
    results_ = fuzz.run_all(jobs, TIMEOUT_S)
    bad = [r for r in results_ if r[1] not in ("ok", "clean")]
    assert not bad, "\n".join(map(str, bad))
    assert len(results_) == len(fuzz.ARTIFACTS)
    assert sum(outcome == "clean" for _, outcome, _ in results_) >= len(fuzz.ARTIFACTS) // 2
