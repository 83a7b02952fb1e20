"""The ``autoseg`` command end to end: synthetic -> plan (validate, fingerprint, plan, preprocess)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from autoseg.cli import main
from autoseg.preprocessing.storage import load_case
from tests.presets import fast_overrides


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_synthetic_then_plan_writes_every_artifact(tmp_path, capsys):
    raw = tmp_path / "raw" / "Dataset910_Cli"
    assert main(["synthetic", str(raw), "--num-cases", "6", "--shape", "20", "28", "28", "--seed", "3"]) == 0
    pre = tmp_path / "pre"
    code = main(
        [
            "plan",
            str(raw),
            f"paths.preprocessed={pre}",
            "--num-workers",
            "1",
            "--explain",
            "3d_fullres.batch_size=3",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "why:" in out and "target spacing" in out and "batch size" in out
    root = pre / "Dataset910_Cli"
    fingerprint = read(root / "fingerprint.json")
    plans = read(root / "default" / "plans.json")
    splits = read(root / "splits.json")
    assert fingerprint["kind"] == "fingerprint" and fingerprint["schema_version"] == 1
    assert plans["kind"] == "plans" and plans["schema_version"] == 1
    assert plans["configurations"]["3d_fullres"]["batch_size"] == 3
    assert plans["overrides"] == ["3d_fullres.batch_size=3"]
    assert plans["run"]["versions"]["autoseg"] and plans["run"]["config"]["paths"]["preprocessed"] == str(pre)
    assert sorted(n for f in splits["folds"] for n in f["val"]) == sorted(
        c["name"] for c in fingerprint["cases"]
    )
    for config in ("3d_fullres", "2d"):
        folder = root / "default" / config
        assert len(list(folder.glob("*_seg.npy"))) == 6
        data, seg, _, locs = load_case(folder, "case_000")
        assert isinstance(data, np.memmap) and data.dtype == np.float32 and data.shape[1:] == seg.shape[1:]
        assert set(np.unique(seg)) <= {-1, 0, 1, 2}
        assert {1, 2} <= set(locs) and all(len(locs[k]) > 0 for k in (1, 2))  # foreground voxels per class


def test_rerun_skips_finished_cases(tiny_mr_dataset, tmp_path):
    pre = tmp_path / "pre"
    args = [
        "plan",
        str(tiny_mr_dataset),
        f"paths.preprocessed={pre}",
        "--num-workers",
        "1",
        "-c",
        "3d_fullres",
    ]
    assert main(args) == 0
    folder = pre / tiny_mr_dataset.name / "default" / "3d_fullres"
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    (folder / "case_002.json").unlink()  # as if the run had died while writing case_002
    assert (
        main(
            [
                "preprocess",
                str(tiny_mr_dataset),
                f"paths.preprocessed={pre}",
                "-c",
                "3d_fullres",
                "--num-workers",
                "1",
            ]
        )
        == 0
    )
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert set(after) == set(mtimes)
    changed = {name for name in after if after[name] != mtimes.get(name)}
    assert changed and all(name.startswith("case_002") for name in changed)


def test_dataset_by_number_from_env_and_override(tiny_mr_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSEG_RAW", str(tiny_mr_dataset.parent))
    monkeypatch.setenv("AUTOSEG_PREPROCESSED", str(tmp_path / "from_env"))
    assert main(["plan", "901", "--no-preprocess", "--num-workers", "1"]) == 0
    assert (tmp_path / "from_env" / "Dataset901_TinyMR" / "default" / "plans.json").is_file()
    # a command-line override wins over the environment
    assert (
        main(["plan", "Dataset901_TinyMR", f"paths.preprocessed={tmp_path / 'cli'}", "--no-preprocess"]) == 0
    )
    assert (tmp_path / "cli" / "Dataset901_TinyMR" / "default" / "plans.json").is_file()


def test_presets_and_gpu_memory(tiny_mr_dataset, tmp_path):
    pre = tmp_path / "pre"
    base = [
        "plan",
        str(tiny_mr_dataset),
        f"paths.preprocessed={pre}",
        "--no-preprocess",
        "--num-workers",
        "1",
    ]
    assert main([*base, "--preset", "resenc-l"]) == 0
    plans = read(pre / tiny_mr_dataset.name / "resenc-l" / "plans.json")
    assert plans["configurations"]["3d_fullres"]["architecture"]["network"] == "resenc"
    assert main([*base, "--gpu-memory", "2", "--plans-name", "small"]) == 0
    small = read(pre / tiny_mr_dataset.name / "small" / "plans.json")
    assert small["planner"]["gpu_memory_gb"] == 2.0


def test_bad_dataset_lists_every_problem_and_writes_nothing(tiny_mr_dataset, tmp_path, capsys):
    broken = tmp_path / "Dataset911_Broken"
    shutil.copytree(tiny_mr_dataset, broken)
    (broken / "labelsTr" / "case_000.nii.gz").unlink()
    (broken / "imagesTr" / "case_003_0000.nii.gz").write_bytes(b"\x1f\x8b garbage")
    pre = tmp_path / "pre"
    assert main(["plan", str(broken), f"paths.preprocessed={pre}", "--num-workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "nothing was written" in err
    assert "case_000" in err and "case_003_0000.nii.gz" in err
    assert not pre.exists()
    assert main(["validate", str(broken), "--num-workers", "1"]) == 1
    assert "case_003_0000.nii.gz" in capsys.readouterr().out


def test_unknown_dataset_and_missing_root_are_clear_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AUTOSEG_RAW", raising=False)
    assert main(["plan", "123"]) == 1
    assert "AUTOSEG_RAW" in capsys.readouterr().err
    assert main(["plan", "123", f"paths.raw={tmp_path}"]) == 1
    assert "Dataset123_" in capsys.readouterr().err


def test_bad_plan_override_is_reported(tiny_mr_dataset, tmp_path, capsys):
    args = [
        "plan",
        str(tiny_mr_dataset),
        f"paths.preprocessed={tmp_path}",
        "--no-preprocess",
        "3d_fullres.patch_sise=[8,8,8]",
    ]
    assert main(args) == 1
    assert "did you mean 'patch_size'" in capsys.readouterr().err


@pytest.mark.realdata
def test_hippocampus_plan_matches_nnunet(hippocampus_raw, tmp_path):
    """nnU-Net v2 plans these 100 cases as 3d_fullres 40x56x40, batch 4, 4 stages, a 2d
    configuration of 56x40 (batch 143 by its 5% cap), and no 3d_lowres."""
    pre = tmp_path / "pre"
    assert main(["plan", str(hippocampus_raw), f"paths.preprocessed={pre}", "-c", "3d_fullres"]) == 0
    plans = read(pre / "Dataset004_Hippocampus" / "default" / "plans.json")
    full, two = plans["configurations"]["3d_fullres"], plans["configurations"]["2d"]
    assert full["spacing"] == [1.0, 1.0, 1.0]
    assert full["patch_size"] == [40, 56, 40] and full["batch_size"] == 4
    assert full["architecture"]["n_stages"] == 4
    assert two["patch_size"] == [56, 40] and two["batch_size"] == 143
    assert "3d_lowres" not in plans["configurations"]
    assert full["normalization_schemes"] == ["zscore"] and full["use_mask_for_norm"] == [False]
    folder = pre / "Dataset004_Hippocampus" / "default" / "3d_fullres"
    assert len(list(folder.glob("*.json"))) == 100
    data, seg, _, _ = load_case(folder, "hippocampus_006")
    assert abs(float(data.mean())) < 0.05 and abs(float(data.std()) - 1) < 0.05  # per-image z-score
    assert {0, 1, 2} <= set(np.unique(seg).tolist()) <= {-1, 0, 1, 2}  # -1: outside the non-zero region


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_train_command_runs_a_fold_and_resumes(tiny_mr_dataset, tmp_path, configuration):
    pre, res = tmp_path / "pre", tmp_path / "res"
    roots = [f"paths.preprocessed={pre}", f"paths.results={res}"]
    assert main(["plan", str(tiny_mr_dataset), *roots, "-c", configuration, "--num-workers", "1"]) == 0
    quick = ["--trainer", "quick", *fast_overrides(epochs=2, iterations_per_epoch=2)]
    assert main(["train", str(tiny_mr_dataset), configuration, "1", *roots, *quick, "--device", "cpu"]) == 0
    fold = res / tiny_mr_dataset.name / "default" / configuration / "fold_1"
    summary = read(fold / "validation" / "summary.json")
    assert summary["configuration"] == configuration and len(summary["cases"]) >= 1
    assert len(read(fold / "history.json")) == 2
    # resume with a longer schedule continues from epoch 2
    assert (
        main(
            [
                "train",
                str(tiny_mr_dataset),
                configuration,
                "1",
                *roots,
                *quick,
                "trainer.epochs=3",
                "--resume",
            ]
        )
        == 0
    )
    assert [r["epoch"] for r in read(fold / "history.json")] == [0, 1, 2]


def test_train_errors_are_clear(tiny_mr_dataset, tmp_path, capsys):
    roots = [f"paths.preprocessed={tmp_path / 'pre'}", f"paths.results={tmp_path / 'res'}"]
    assert main(["plan", str(tiny_mr_dataset), *roots, "--no-preprocess", "--num-workers", "1"]) == 0
    assert main(["train", str(tiny_mr_dataset), "3d_lowres", "0", *roots]) == 1
    assert "not in" in capsys.readouterr().err
    assert main(["train", str(tiny_mr_dataset), "3d_fullres", "7", *roots]) == 1
    assert "fold 7 does not exist" in capsys.readouterr().err
    assert main(["train", str(tiny_mr_dataset), "3d_fullres", "0", *roots, "trainer.epoch=3"]) != 0
