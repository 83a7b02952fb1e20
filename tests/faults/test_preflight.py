"""Issue 21: every command after ``plan`` checks what it will read first, lists every problem at once,
names the user's file with the fix, exits 1 and writes nothing; no traceback (``-v`` shows it)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autoseg.cli import main
from autoseg.io.images import read_image, write_image
from tests.faults.driver import TRAIN
from tests.faults.results import roots, validated_results


@pytest.fixture(scope="module")
def results(scenario, tmp_path_factory):
    scn, _ = scenario
    base = tmp_path_factory.mktemp("validated")
    return validated_results(scn, base / "results")


def fresh(results: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the validated results folder to damage: (results root, model root)."""
    shutil.copytree(results.parent, tmp_path / "results")
    return tmp_path / "results", tmp_path / "results" / results.name


def truncate(path: Path, keep: int = 200) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_find_best_lists_a_dropped_case_and_a_damaged_mask_by_the_folds_file(
    scenario, results, tmp_path, capsys
):
    scn, _ = scenario
    root, model = fresh(results, tmp_path)
    val0 = model / "default" / "3d_fullres" / "fold_0" / "validation"
    val1 = model / "default" / "3d_fullres" / "fold_1" / "validation"
    summary = json.loads((val0 / "summary.json").read_text())
    dropped = summary["cases"].pop()["case"]
    (val0 / "summary.json").write_text(json.dumps(summary))
    damaged = sorted(val1.glob("*.nii.gz"))[0]
    truncate(damaged)
    assert main(["find-best", str(scn.raw), *roots(scn, root), "--num-workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "nothing was done" in err
    assert f"{damaged}: the file is truncated or corrupt" in err and "--val-only" in err
    assert f"missing here: {dropped}" in err and "labelsTr" in err
    assert "Traceback" not in err
    assert not (model / "default" / "3d_fullres" / "crossval").exists()
    assert not (model / "default" / "3d_fullres" / "cv_summary.json").exists()


def test_ensemble_compares_every_members_cases_and_checks_probabilities_first(results, tmp_path, capsys):
    val = results / "default" / "3d_fullres" / "fold_0" / "validation"
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(val, a)
    shutil.copytree(val, b)
    only_a = sorted(a.glob("*.nii.gz"))[0].name.removesuffix(".nii.gz")
    for f in b.glob(f"{only_a}.*"):
        f.unlink()
    kept = sorted(b.glob("*.npz"))[0]
    truncate(kept, 50)
    assert main(["ensemble", "-i", str(b), str(a), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"error: {b}: 1 case(s) of {a} missing here: {only_a}" in err
    assert f"{kept}: cannot be read as a probabilities file" in err and "--save-probabilities" in err
    assert not (tmp_path / "out").exists()


def test_evaluate_lists_missing_and_unreadable_files_together(scenario, tmp_path, capsys):
    scn, _ = scenario
    pred = tmp_path / "pred"
    shutil.copytree(scn.raw / "labelsTr", pred)
    cases = sorted(pred.glob("*.nii.gz"))
    cases[0].unlink()
    truncate(cases[1], 100)
    (pred / "extra.nii").write_bytes(b"")
    assert main(["evaluate", str(pred), str(scn.raw / "labelsTr"), "--num-workers", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{pred}: 1 case(s) of {scn.raw / 'labelsTr'} missing here: {cases[0].name[:-7]}" in err
    assert f"error: {cases[1]}:" in err and "replace the file" in err
    assert f"warning: {pred / 'extra.nii'}: not used" in err
    assert not (pred / "summary.json").exists()


def test_evaluate_refuses_undeclared_label_values_unless_allowed(scenario, tmp_path, capsys):
    scn, _ = scenario
    pred = tmp_path / "pred"
    shutil.copytree(scn.raw / "labelsTr", pred)
    victim = sorted(pred.glob("*.nii.gz"))[0]
    seg, geom = read_image(victim)
    seg[0, 0, :2] = 7
    write_image(seg, geom, victim)
    ref = str(scn.raw / "labelsTr")
    assert main(["evaluate", str(pred), ref, "--num-workers", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{victim}: label value(s) [7] are not among the dataset's labels [0, 1]" in err
    assert "--allow-unknown-labels" in err and not (pred / "summary.json").exists()
    assert main(["evaluate", str(pred), ref, "--num-workers", "1", "--allow-unknown-labels"]) == 0
    summary = json.loads((pred / "summary.json").read_text())
    assert summary["unknown_labels"] == {victim.name[:-7]: {"prediction": [7]}}


def test_predict_lists_unused_inputs_and_strict_refuses_them(scenario, tmp_path, capsys):
    scn, _ = scenario
    inputs = tmp_path / "in"
    shutil.copytree(scn.heldout, inputs)
    shutil.copyfile(sorted(inputs.glob("*_0000.nii.gz"))[0], inputs / "scan.nii.gz")
    (inputs / "notes.txt").write_text("x")
    base = ["predict", "-i", str(inputs), "-m", str(scn.model()), "-f", "0", "--device", "cpu", "--no-tta"]
    assert main([*base, "-o", str(tmp_path / "strict"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert f"error: {inputs / 'scan.nii.gz'}: not used" in err and f"{inputs / 'notes.txt'}: not used" in err
    assert not (tmp_path / "strict").exists()
    assert main([*base, "-o", str(tmp_path / "out")]) == 0
    assert f"warning: {inputs / 'scan.nii.gz'}: not used" in capsys.readouterr().err


def test_predict_refuses_a_2d_image_for_a_3d_model_saying_what_works(scenario, tmp_path, capsys):
    scn, _ = scenario
    inputs = tmp_path / "in"
    inputs.mkdir()
    image, _ = read_image(sorted(scn.heldout.glob("*.nii.gz"))[0])
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(image[8]), str(inputs / "flat_0000.nii.gz"))
    args = ["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(scn.model()), "-f", "0"]
    assert main([*args, "--device", "cpu", "--no-tta"]) == 1
    err = capsys.readouterr().err
    assert (
        f"{inputs / 'flat_0000.nii.gz'}: a 2D image [" in err
        and "but 3d_fullres is a 3D configuration" in err
    )
    assert "train the 2d configuration" in err and not (tmp_path / "out").exists()


def test_a_damaged_checkpoint_in_an_archive_is_named_inside_the_archive(scenario, tmp_path, capsys):
    scn, _ = scenario
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(scn.model().rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                zf.writestr(
                    path.relative_to(scn.model()).as_posix(), data[:300] if path.suffix == ".pt" else data
                )
    args = ["predict", "-i", str(scn.heldout), "-o", str(tmp_path / "out"), "-m", str(archive), "-f", "0"]
    assert main([*args, "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{archive}:/default/3d_fullres/fold_0/checkpoint_final.pt: cannot be read as a checkpoint" in err
    assert "autoseg-model-" not in err and not (tmp_path / "out").exists()


def test_export_model_and_report_name_the_damaged_file_and_the_command(scenario, results, tmp_path, capsys):
    scn, _ = scenario
    root, model = fresh(results, tmp_path)
    checkpoint = model / "default" / "3d_fullres" / "fold_1" / "checkpoint_final.pt"
    truncate(checkpoint, 4000)
    out = tmp_path / "model.zip"
    assert main(["export-model", str(scn.raw), "-o", str(out), *roots(scn, root)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{checkpoint}: cannot be read as a checkpoint" in err
        and f"autoseg train {scn.raw} 3d_fullres 1" in err
    )
    assert not out.exists()
    (model / "selection.json").write_text('{"kind": ')
    assert main(["report", str(scn.raw), "-o", str(tmp_path / "r.html"), *roots(scn, root)]) == 1
    err = capsys.readouterr().err
    assert f"{model / 'selection.json'}: not valid JSON" in err and f"autoseg find-best {scn.raw}" in err
    assert not (tmp_path / "r.html").exists()


def test_train_checks_every_preprocessed_case_before_the_first_step(scenario, tmp_path, capsys):
    scn, _ = scenario
    pre = tmp_path / "pre"
    shutil.copytree(scn.root / "ref" / "pre", pre)
    data = pre / scn.raw.name / "default" / "3d_fullres"
    (data / "case_000.npy").unlink()
    truncate(data / "case_001_seg.npy", 100)
    paths = [f"paths.preprocessed={pre}", f"paths.results={tmp_path / 'results'}", "num_folds=2"]
    assert main(["train", str(scn.raw), "3d_fullres", "0", *paths, *TRAIN]) == 1
    err = capsys.readouterr().err
    command = f"autoseg preprocess {scn.raw} -c 3d_fullres"
    assert f"{data / 'case_000.npy'}: preprocessed case case_000: is missing; repair it: {command}" in err
    assert f"{data / 'case_001_seg.npy'}: preprocessed case case_001: is not a readable" in err
    assert not (tmp_path / "results").exists()
    assert main(["train", str(scn.raw), "3d_fullres", "0", f"paths.preprocessed={tmp_path / 'none'}"]) == 1
    assert f"not planned yet: run autoseg plan {scn.raw} -c 3d_fullres" in capsys.readouterr().err


def test_verbose_shows_the_traceback_of_a_refusal(scenario, tmp_path, capsys):
    scn, _ = scenario
    args = ["evaluate", str(tmp_path / "missing"), str(scn.raw / "labelsTr")]
    assert main(args) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["-v", *args]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "prediction folder does not exist" in err


def test_unknown_label_values_of_a_reference_are_found_too(tmp_path):
    from autoseg.evaluation.evaluate import values_outside

    assert values_outside(np.array([[0, 3], [1, 1]], dtype=np.int16), frozenset({0, 1})) == [3]
    assert values_outside(np.array([-1, 0]), frozenset({0})) == [-1]


def test_convert_msd_names_a_broken_dataset_json_without_a_traceback(tmp_path, capsys):
    task = tmp_path / "Task01_X"
    task.mkdir()
    (task / "dataset.json").write_text("[]")
    assert main(["convert", "msd", str(task), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{task / 'dataset.json'}: not a JSON object but array; fix the MSD task's dataset.json" in err
    assert not (tmp_path / "out").exists()
