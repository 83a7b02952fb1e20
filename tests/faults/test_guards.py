"""Stage guards: each bad situation is a clear error naming the file, before any work starts."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autoseg.cli import main
from autoseg.io.images import read_image, write_image
from autoseg.training.lock import LOCK_NAME, FoldLockedError, fold_lock
from autoseg.utils.files import WriteError
from tests.faults.driver import TRAIN


def train_args(scn, tag: str) -> list[str]:
    return ["train", str(scn.raw), "3d_fullres", "0", *scn.roots(tag, pre="ref"), *TRAIN]


def test_second_train_on_the_same_fold_refuses(scenario, tmp_path, capsys):
    scn, _ = scenario
    fold = scn.fold("locked")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time\nfrom autoseg.training.lock import fold_lock\n"
            f"with fold_lock(__import__('pathlib').Path({str(fold)!r})):\n    print('held', flush=True)\n"
            "    time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(train_args(scn, "locked")) == 1
        err = capsys.readouterr().err
        assert f"{fold}: another `autoseg train` is training this fold (pid {holder.pid} on host" in err
        assert not (fold / "checkpoint_latest.pt").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0})
    )
    from autoseg.utils.files import _owner

    host = _owner().rsplit("-", 1)[0]
    half_written = tmp_path / f".checkpoint_latest.pt.{host}-{dead.pid}.x1y2.tmp.pt"
    half_written.write_bytes(b"partial")
    with fold_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] != dead.pid
        assert not half_written.exists()
        with (
            pytest.raises(FoldLockedError, match="another `autoseg train` is training this fold"),
            fold_lock(tmp_path),
        ):
            pass
    assert f"left by pid {dead.pid} on host" in caplog.text and "is no longer running" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "zeros"])
def test_a_damaged_checkpoint_is_a_clear_error_naming_the_file(scenario, tmp_path, capsys, damage):
    scn, _ = scenario
    model = tmp_path / "model"
    shutil.copytree(scn.model(), model)
    checkpoint = model / "default" / "3d_fullres" / "fold_0" / "checkpoint_final.pt"
    data = bytearray(checkpoint.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)
        data[:64] = bytes(b ^ 0xFF for b in data[:64])
    else:
        data = bytearray(len(data))
    checkpoint.write_bytes(bytes(data))
    args = [
        "predict",
        "-i",
        str(scn.heldout),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(model),
        "--device",
        "cpu",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{checkpoint}: cannot be read as a checkpoint" in err and "truncated or corrupted" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_resume_from_a_truncated_latest_checkpoint_names_it(scenario, tmp_path, capsys):
    scn, _ = scenario
    fold = scn.fold("resume_damaged")
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pt").write_bytes(
        (scn.fold("ref") / "checkpoint_latest.pt").read_bytes()[:5000]
    )
    assert main([*train_args(scn, "resume_damaged"), "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"{fold / 'checkpoint_latest.pt'}: cannot be read as a checkpoint" in err


def test_an_override_typo_suggests_the_nearest_key(scenario, capsys):
    scn, _ = scenario
    assert main([*train_args(scn, "typo"), "trainer.epoch=5"]) == 1
    err = capsys.readouterr().err
    assert "the config has no key 'trainer.epoch'; did you mean 'trainer.epochs'?" in err
    assert not scn.fold("typo").exists()


def predict(scn, inputs: Path, out: Path, *extra: str, model: Path | None = None) -> list[str]:
    return [
        "predict",
        "-i",
        str(inputs),
        "-o",
        str(out),
        "-m",
        str(model or scn.model()),
        "--device",
        "cpu",
        "--no-tta",
        *extra,
    ]


def test_predict_refuses_before_any_work(scenario, tmp_path, capsys):
    scn, _ = scenario
    out = tmp_path / "out"
    # a fold that was not trained
    assert main(predict(scn, scn.heldout, out, "-f", "3")) == 1
    assert "fold(s) 3 are not trained (trained: 0)" in capsys.readouterr().err
    # an input folder with nothing readable
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    for name in ("a_0000.nii.gz", "b_0000.nrrd"):
        (garbage / name).write_bytes(b"not an image at all" * 10)
    assert main(predict(scn, garbage, out)) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and f"{garbage / 'a_0000.nii.gz'}: cannot read image header" in err
    # an output folder that cannot be created (a file is in the way)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(predict(scn, scn.heldout, blocker / "out")) == 1
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err
    assert not out.exists()


def test_predict_refuses_a_checkpoint_of_another_channel_count(scenario, tmp_path, capsys):
    scn, _ = scenario
    model = tmp_path / "model"
    shutil.copytree(scn.model(), model)
    plans_path = model / "default" / "3d_fullres" / "plans.json"
    plans = json.loads(plans_path.read_text())
    plans["channel_names"] = {"0": "T1", "1": "T2"}
    for conf in plans["configurations"].values():  # a consistent two-channel plan
        conf["normalization_schemes"], conf["use_mask_for_norm"] = ["zscore"] * 2, [False] * 2
    plans_path.write_text(json.dumps(plans))
    inputs = tmp_path / "in"
    for path in sorted(scn.heldout.iterdir()):
        image, geometry = read_image(path)
        for c in (0, 1):
            write_image(image, geometry, inputs / path.name.replace("_0000", f"_{c:04d}"))
    assert main(predict(scn, inputs, tmp_path / "out", model=model)) == 1
    err = capsys.readouterr().err
    assert "checkpoint_final.pt: the network takes 1 input channel(s) but" in err and "lists 2" in err
    assert not (tmp_path / "out").exists()


def test_predict_nonfinite_case_fails_alone_or_is_replaced_when_allowed(scenario, tmp_path, capsys):
    scn, _ = scenario
    inputs = tmp_path / "in"
    shutil.copytree(scn.heldout, inputs)
    first = sorted(inputs.iterdir())[0]
    image, geometry = read_image(first)
    image = image.astype(np.float32)
    image[0, 0, :5] = np.nan
    write_image(image, geometry, first)
    assert main(predict(scn, inputs, tmp_path / "out")) == 1
    captured = capsys.readouterr()
    assert (
        f"failed: {inputs / first.name.replace('_0000.nii.gz', '')}: {first}: 5 NaN voxel values"
        in captured.out
    )
    summary = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert (
        summary["failed"] == 1 and len(list((tmp_path / "out").glob("*.nii.gz"))) == 1
    )  # the other case ran
    assert main(predict(scn, inputs, tmp_path / "out2", "--allow-nonfinite", "0")) == 0
    summary = json.loads((tmp_path / "out2" / "predict.json").read_text())
    assert summary["nonfinite_replacement"] == 0.0 and summary["cases"][0]["nonfinite_replaced"] == 5


def test_disk_full_during_export_keeps_the_previous_archive(scenario, tmp_path, monkeypatch, capsys):
    scn, _ = scenario
    archive = tmp_path / "model.zip"
    args = ["export-model", str(scn.raw), "-o", str(archive), *scn.roots("ref")]
    assert main(args) == 0
    before = archive.read_bytes()

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", enospc)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{archive}: could not write the file (No space left on device)" in err and "unchanged" in err
    assert archive.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]
    assert issubclass(WriteError, OSError)
