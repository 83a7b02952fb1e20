"""``autoseg train DATASET CONFIG all-folds``: folds trained in parallel processes, each with its own
log, a summary at the end, and a non-zero exit when a fold fails."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from autoseg.cli import main
from autoseg.commands.launch import fold_mean_dice
from autoseg.commands.train import FoldJob, Slot, all_folds_slots, parse_gpus, summary_table
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

SCHEDULE = [
    "--trainer",
    "quick",
    "trainer.epochs=2",
    "trainer.iterations_per_epoch=2",
    "trainer.val_iterations=1",
    "trainer.num_workers=0",
    "trainer.final_validation=false",
]


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny dataset planned with a 16^3 patch; the raw folder and the path overrides."""
    root = tmp_path_factory.mktemp("folds")
    raw = generate_dataset(root / "raw" / "Dataset931_Folds", SyntheticSpec(num_cases=6, shape=(20, 24, 24)))
    roots = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'res'}"]
    plan = ["plan", str(raw), *roots, "-c", "3d_fullres", "--num-workers", "1"]
    assert main([*plan, "3d_fullres.patch_size=[16,16,16]"]) == 0
    return raw, roots


def test_two_folds_in_parallel(planned, tmp_path, capsys):
    raw, roots = planned
    results = tmp_path / "res"
    roots = [roots[0], f"paths.results={results}"]
    command = ["train", str(raw), "3d_fullres", "all-folds", "--folds", "0,1", "--parallel", "2"]
    assert main([*command, "--device", "cpu", *roots, *SCHEDULE]) == 0
    out = capsys.readouterr().out
    config = results / raw.name / "default" / "3d_fullres"
    for fold in (0, 1):
        folder = config / f"fold_{fold}"
        assert (folder / "checkpoint_final.pt").is_file()
        assert "trained 3d_fullres fold" in (folder / "launcher.log").read_text()
        assert f"started 3d_fullres fold {fold}" in out
    summary = json.loads((config.parent / "all_folds_summary.json").read_text())
    assert [(s["configuration"], s["fold"], s["exit_code"]) for s in summary] == [
        ("3d_fullres", 0, 0),
        ("3d_fullres", 1, 0),
    ]
    assert {s["slot"] for s in summary} == {"cpu 0", "cpu 1"}
    assert "configuration  fold" in out and "all 2 jobs done" in out


def test_a_failing_fold_fails_the_queue(planned, tmp_path, capsys):
    raw, roots = planned
    results = tmp_path / "res"
    command = ["train", str(raw), "3d_fullres", "all-folds", "--folds", "2", "--device", "cpu", "--resume"]
    assert main([*command, roots[0], f"paths.results={results}", *SCHEDULE]) == 1  # nothing to resume
    captured = capsys.readouterr()
    assert "FAILED (exit 1): 3d_fullres fold 2" in captured.out
    assert "1 of 1 jobs failed" in captured.err
    log = (results / raw.name / "default" / "3d_fullres" / "fold_2" / "launcher.log").read_text()
    assert "no checkpoint" in log
    assert main([*command, roots[0], f"paths.results={results}", *SCHEDULE, "trainer.epochs=0"]) == 1
    assert "epochs=0 must be >= 1" in capsys.readouterr().err  # checked before any job starts


def test_all_folds_errors_are_clear(planned, capsys):
    raw, roots = planned
    command = ["train", str(raw), "3d_fullres,3d_lowres", "all-folds", "--device", "cpu", *roots]
    assert main(command) == 1
    assert "'3d_lowres' is not in" in capsys.readouterr().err
    assert main(["train", str(raw), "3d_fullres", "all-folds", "--folds", "3,9", *roots]) == 1
    assert "fold 9 does not exist" in capsys.readouterr().err
    assert main(["train", str(raw), "2d,3d_fullres", "0", *roots]) == 1
    assert "all-folds only" in capsys.readouterr().err


def test_parse_gpus():
    assert parse_gpus("4") == (4, None)
    assert parse_gpus("0,1,3") == (3, [0, 1, 3])
    assert parse_gpus("2,") == (1, [2])
    for bad in ("0", "a", "1,1", "-1,2"):
        with pytest.raises(ValueError, match="--gpus"):
            parse_gpus(bad)


def test_slots_per_gpu_or_cpu_share(monkeypatch):
    def slots(**kwargs: object) -> list[Slot]:
        return all_folds_slots(
            argparse.Namespace(**{"gpus": None, "parallel": None, "device": "cpu", **kwargs})
        )

    monkeypatch.setattr("autoseg.commands.train._cores", lambda: 8)
    assert slots() == [Slot("cpu 0", "cpu", {"OMP_NUM_THREADS": "8", "CUDA_VISIBLE_DEVICES": ""})]
    assert [s.env["OMP_NUM_THREADS"] for s in slots(parallel=4)] == ["2"] * 4
    assert [s.name for s in slots(gpus="2")] == ["cpu 0", "cpu 1"]  # --gpus N --device cpu: N CPU jobs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpus = slots(gpus="1,3", device="auto")
    assert [(s.name, s.device, s.env) for s in gpus] == [
        ("gpu 1", "cuda", {"CUDA_VISIBLE_DEVICES": "1"}),
        ("gpu 3", "cuda", {"CUDA_VISIBLE_DEVICES": "3"}),
    ]
    assert [s.name for s in slots(gpus="2", device="cuda")] == ["gpu 0", "gpu 1"]
    with pytest.raises(ValueError, match="not both"):
        slots(gpus="2", parallel=2)
    with pytest.raises(ValueError, match="use cuda"):
        slots(gpus="2", device="cuda:1")


def test_summary_reads_the_validation_mean(tmp_path):
    done = tmp_path / "fold_0"
    (done / "validation").mkdir(parents=True)
    (done / "validation" / "summary.json").write_text(json.dumps({"mean": {"a": 0.8, "b": 0.6, "c": None}}))
    assert fold_mean_dice(done) == pytest.approx(0.7)
    assert fold_mean_dice(tmp_path / "fold_1") is None
    jobs = [
        FoldJob("3d_fullres", 0, done, [], "gpu 0", 0, 61.0, 0.7),
        FoldJob("2d", 1, tmp_path / "fold_1", [], "gpu 1", 1, 3.0, None),
    ]
    lines = summary_table(jobs).splitlines()
    assert lines[0].split() == ["configuration", "fold", "slot", "exit", "time", "mean", "Dice"]
    assert lines[1].split() == ["3d_fullres", "0", "gpu", "0", "0", "61", "s", "0.7000"]
    assert lines[2].split() == ["2d", "1", "gpu", "1", "1", "3", "s", "-"]
