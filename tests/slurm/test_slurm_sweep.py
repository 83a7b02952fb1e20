"""``autoseg sweep`` on the real one-node SLURM cluster: two synthetic datasets x two configurations x
two folds, planned once each, trained as SLURM jobs, ranked by find-best, written to a leaderboard
with bootstrap CIs and a Wilcoxon column, recorded in a manifest; a second run submits nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from autoseg.cli import main
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

TRAINING = [
    "trainer.epochs=2",
    "trainer.iterations_per_epoch=2",
    "trainer.val_iterations=1",
    "trainer.num_workers=0",
    "trainer.tta_mirroring=false",
]


def _sweep_file(tmp_path: Path) -> tuple[Path, list[Path]]:
    raws = [
        generate_dataset(
            tmp_path / "raw" / f"Dataset95{k}_Sweep", SyntheticSpec(num_cases=6, shape=(20, 24, 24), seed=k)
        )
        for k in (1, 2)
    ]
    sweep = {
        "name": "ci",
        "datasets": [str(r) for r in raws],
        "configurations": ["3d_fullres", "2d"],
        "num_folds": 2,
        "presets": {"quick": {"trainer": "quick"}},
        "baseline": "quick/3d_fullres",
        "overrides": TRAINING,
        "plan_overrides": ["3d_fullres.patch_size=[16,16,16]"],
        "launcher": {"name": "slurm", "gpus_per_job": 0, "cpus_per_job": 1, "mem_gb": None, "poll_s": 1},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path, raws


def test_slurm_sweep_leaderboard_and_rerun(slurm_cluster, tmp_path, capsys):
    path, raws = _sweep_file(tmp_path)
    roots = [f"paths.preprocessed={tmp_path / 'pre'}", f"paths.results={tmp_path / 'res'}"]
    assert main(["sweep", str(path), *roots]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "8 trainings: 0 finished, 8 to submit" in out
    assert out.count("as SLURM job") == 8 and "FAILED" not in out
    folder = tmp_path / "res" / "sweeps" / "ci"

    board = json.loads((folder / "leaderboard.json").read_text())
    assert board["schema_version"] == 1 and "bootstrap" in board["ci_method"]
    assert sorted(board["datasets"]) == sorted(r.name for r in raws)
    for entry in board["datasets"].values():
        rows = {r["name"]: r for r in entry["rows"]}
        assert sorted(rows) == ["quick/2d", "quick/3d_fullres"] and entry["classes"] == ["class_1", "class_2"]
        for row in rows.values():
            assert row["cases"] == 6  # the out-of-fold cases of both folds
            for mean, low, high in row["dice"].values():
                assert 0 <= low <= mean <= high <= 1
        assert rows["quick/3d_fullres"]["wilcoxon_p"] is None  # the baseline
        assert rows["quick/2d"]["pairs"] == 6 and 0 < rows["quick/2d"]["wilcoxon_p"] <= 1

    markdown = (folder / "leaderboard.md").read_text()
    assert "Wilcoxon p vs baseline" in markdown and "| baseline |" in markdown
    lines = list(csv.DictReader((folder / "leaderboard.csv").open()))
    assert len(lines) == 2 * 2 * 3  # datasets x rows x (2 classes + mean)
    assert all(float(r["ci_low"]) <= float(r["dice_mean"]) <= float(r["ci_high"]) for r in lines)
    assert {r["wilcoxon_p"] != "" for r in lines if r["row"] == "quick/2d"} == {True}

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["launcher"]["name"] == "slurm"
    assert manifest["versions"]["torch"] and manifest["versions"]["submitit"] and "git_commit" in manifest
    assert manifest["seeds"] == [12345] and all(manifest["plans_sha256"].values())
    assert len(manifest["trainings"]) == 8
    assert all(
        t["status"] == "done" and t["slot"].startswith("slurm ") and t["config_hash"]
        for t in manifest["trainings"]
    )
    # one selection per dataset (find-best ran)
    for raw in raws:
        assert (folder / "runs" / "quick-seed12345" / raw.name / "selection.json").is_file()

    # a second run finds everything done: nothing is submitted, the leaderboard is rewritten
    assert main(["sweep", str(path), *roots]) == 0
    again = capsys.readouterr().out
    assert "8 trainings: 8 finished, 0 to submit" in again and "as SLURM job" not in again
    assert "planning" not in again and "find-best for" not in again
    invocations = json.loads((folder / "manifest.json").read_text())["invocations"]
    assert [i["submitted"] for i in invocations] == [8, 0]

    # autoseg report shows the leaderboard
    report = tmp_path / "report.html"
    results = f"paths.results={folder / 'runs' / 'quick-seed12345'}"
    assert main(["report", str(raws[0]), roots[0], results, "-o", str(report), "--thumbnails", "0"]) == 0
    assert "Sweep leaderboards" in report.with_suffix(".md").read_text()
