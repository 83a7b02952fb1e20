"""Atomic writes: the umask's mode, fsync before the rename; a crash or a full disk keeps the old file."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.io.images import Geometry, write_image
from autoseg.preprocessing.storage import case_files, save_case
from autoseg.training.checkpoint import load_checkpoint, save_checkpoint
from autoseg.utils import files
from autoseg.utils.files import WriteError, atomic_path, write_json
from tests.presets import case_properties


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_get_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    geometry = Geometry((2, 3, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    written = [
        write_json(tmp_path / "plans.json", {"a": 1}),
        write_image(np.zeros((2, 3, 4), np.uint8), geometry, tmp_path / "mask.nii.gz"),
        save_checkpoint(tmp_path / "checkpoint_final.pt", {"network": {"w": torch.ones(2)}}),
    ]
    assert [oct(mode(p)) for p in written] == [oct(expected)] * 3


def test_data_and_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = files.fsync_path, os.replace

    def fsync(path: Path, directory: bool = False) -> None:
        events.append("fsync folder" if directory else "fsync " + Path(path).name[:7])
        real_fsync(path, directory)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(files, "fsync_path", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    write_json(tmp_path / "x.json", {})
    assert events == ["fsync .x.json", "rename", "fsync folder"]


def test_a_crash_between_write_and_rename_keeps_the_old_file(tmp_path):
    target = tmp_path / "plans.json"
    write_json(target, {"version": "old"})
    code = f"from autoseg.utils.files import write_json; write_json({str(target)!r}, {{'version': 'new'}})"
    env = {**os.environ, "AUTOSEG_KILL_AT": "write"}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"version": "old"}
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and json.loads(leftovers[0].read_text()) == {"version": "new"}  # fully written
    with atomic_path(tmp_path / "other.json") as tmp:  # a live writer's temporary file is left alone
        assert files.remove_stale_temporaries(tmp_path) == leftovers
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json", "plans.json"]


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "checkpoint_latest.pt", {"epoch": 3})
    monkeypatch.setattr(torch, "save", enospc)
    message = r"checkpoint_latest\.pt: could not write .*No space left.*free some disk space"
    with pytest.raises(WriteError, match=message):
        save_checkpoint(path, {"epoch": 4})
    assert load_checkpoint(path)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_latest.pt"]


def test_disk_full_during_preprocessing_keeps_the_previous_case(tmp_path, monkeypatch):
    data, seg = np.ones((1, 2, 3, 4), np.float32), np.zeros((2, 3, 4), np.int8)
    save_case(
        tmp_path, "case_000", data, seg, case_properties("case_000", (2, 3, 4)), {1: np.zeros((1, 3))}, "hash"
    )
    before = {k: p.read_bytes() for k, p in case_files(tmp_path, "case_000").items()}
    monkeypatch.setattr(np, "save", enospc)
    with pytest.raises(WriteError, match=r"case_000\.npy: could not write"):
        save_case(
            tmp_path,
            "case_000",
            2 * data,
            seg,
            case_properties("case_000", (2, 3, 4)),
            {1: np.zeros((1, 3))},
            "hash",
        )
    after = {k: p.read_bytes() for k, p in case_files(tmp_path, "case_000").items() if p.exists()}
    assert after["data"] == before["data"] and after["seg"] == before["seg"]
    assert "properties" not in after  # the case reads as incomplete, so a rerun redoes it


def test_failed_write_in_the_writer_leaves_no_temporary_file(tmp_path):
    with pytest.raises(WriteError, match="permission"), atomic_path(tmp_path / "x.bin"):
        raise PermissionError(errno.EACCES, "permission denied")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_during_plan_is_a_clear_error(tiny_mr_dataset, tmp_path, monkeypatch, capsys):
    from autoseg.cli import main

    pre = tmp_path / "pre"
    args = ["plan", str(tiny_mr_dataset), f"paths.preprocessed={pre}", "--num-workers", "1", "-c", "2d"]
    monkeypatch.setattr(np, "save", enospc)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "autoseg plan: error:" in err and "could not write the file (No space left on device)" in err
    assert "Traceback" not in err
    assert not list((pre / tiny_mr_dataset.name / "default" / "2d").glob("*.json"))  # no case looks complete
    monkeypatch.undo()
    assert main([*args, "--reuse-fingerprint"]) == 0  # a rerun with space finishes the job
    assert len(list((pre / tiny_mr_dataset.name / "default" / "2d").glob("*.json"))) == 8
