"""predict / find-best / ensemble / export-model end to end on an easy synthetic task, and the
geometry round trip of predict on an anisotropic, rotated, shifted scan."""

from __future__ import annotations

import json
import logging
import math
import zipfile

import numpy as np
import torch

from autoseg.cli import main
from autoseg.evaluation.metrics import dice_per_label
from autoseg.inference.model import open_model
from autoseg.inference.predictor import ConfigurationPredictor, PredictOptions
from autoseg.io.images import Geometry, read_geometry, read_image, write_image
from tests.inference.conftest import ThresholdNet


def test_find_best_compares_configurations_and_the_ensemble(trained):
    results = trained["results"]
    selection = json.loads((results / "selection.json").read_text())
    assert selection["kind"] == "selection"
    kinds = sorted(" + ".join(c["configurations"]) for c in selection["candidates"])
    assert kinds == ["2d", "2d + 3d_fullres", "3d_fullres"]
    best = max(selection["candidates"], key=lambda c: c["score"])
    assert selection["configurations"] == best["configurations"]
    assert best["score"] > 0.7, selection["candidates"]
    for config in ("3d_fullres", "2d"):
        summary = json.loads((results / "default" / config / "cv_summary.json").read_text())
        assert len(summary["cases"]) == 8  # every training case once, out of fold
        assert summary["mean"]["class_1"]["dice"] > 0.5, summary["mean"]
    assert (results / "default" / "ensembles" / "2d+3d_fullres" / "cv_summary.json").is_file()
    assert set(selection["postprocessing"]) >= {"foreground_lcc", "class_lcc"}
    assert selection["predict_command"].startswith("autoseg predict")
    assert (results / "cv_dice.png").read_bytes().startswith(b"\x89PNG")
    validation = results / "default" / "3d_fullres" / "fold_0" / "validation"
    pngs = sorted(validation.glob("*.png"))
    assert pngs and len(pngs) == len(list(validation.glob("*.nii.gz")))


def test_predict_heldout_cases_and_evaluate(trained, tmp_path, capsys):
    out = tmp_path / "pred"
    code = main(
        ["predict", "-i", str(trained["heldout"] / "imagesTr"), "-o", str(out), "-m", str(trained["results"])]
    )
    assert code == 0
    record = json.loads((out / "predict.json").read_text())
    assert record["failed"] == 0 and len(record["cases"]) == 3
    for case in ("case_000", "case_001", "case_002"):
        geometry = read_geometry(out / f"{case}.nii.gz")[0]
        reference_geometry = read_geometry(trained["heldout"] / "labelsTr" / f"{case}.nii.gz")[0]
        assert geometry == reference_geometry
    assert (
        main(["evaluate", str(out), str(trained["heldout"] / "labelsTr"), "-o", str(tmp_path / "eval.json")])
        == 0
    )
    summary = json.loads((tmp_path / "eval.json").read_text())
    dice = summary["foreground_mean"]["dice"]
    assert dice > 0.8, summary["mean"]


def test_exported_model_predicts_the_same_elsewhere(trained, tmp_path):
    paths = [f"paths.results={trained['root'] / 'results'}"]
    archive = tmp_path / "model.zip"
    assert main(["export-model", str(trained["raw"]), "-o", str(archive), *paths]) == 0
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("model.json"))
    assert "dataset.json" in names and "selection.json" in names and "model.json" in names
    assert not any(n.startswith("/") or ".." in n for n in names)
    assert str(trained["root"]) not in json.dumps(manifest)
    heldout = trained["heldout"] / "imagesTr"
    a, b = tmp_path / "a", tmp_path / "b"
    fast = ["--no-tta", "-f", "0"]
    assert main(["predict", "-i", str(heldout), "-o", str(a), "-m", str(trained["results"]), *fast]) == 0
    assert main(["predict", "-i", str(heldout), "-o", str(b), "-m", str(archive), *fast]) == 0
    for case in ("case_000", "case_001", "case_002"):
        assert np.array_equal(read_image(a / f"{case}.nii.gz")[0], read_image(b / f"{case}.nii.gz")[0])


def test_streamed_masks_equal_the_whole_array_path_and_memory_is_recorded(trained, tmp_path, caplog):
    """Without --save-probabilities the mask is made slab by slab; with it, from the whole native
    probabilities (the reference path): the masks agree, and predict.json records the memory."""
    heldout = trained["heldout"] / "imagesTr"
    fast = ["-m", str(trained["results"]), "--no-tta", "-f", "0", "-c", "3d_fullres"]
    streamed, whole = tmp_path / "streamed", tmp_path / "whole"
    with caplog.at_level(logging.INFO):
        assert main(["predict", "-i", str(heldout), "-o", str(streamed), *fast]) == 0
    assert main(["predict", "-i", str(heldout), "-o", str(whole), *fast, "--save-probabilities"]) == 0
    for case in ("case_000", "case_001", "case_002"):
        a, b = read_image(streamed / f"{case}.nii.gz")[0], read_image(whole / f"{case}.nii.gz")[0]
        assert a.shape == b.shape and float((a == b).mean()) >= 0.9999
        assert not (streamed / f"{case}.npz").exists() and (whole / f"{case}.npz").is_file()
    record = json.loads((streamed / "predict.json").read_text())
    assert record["memory"]["peak_rss_mib"] > 100 and record["memory"]["estimate_mib"] > 100
    assert all(c["memory_estimate_mib"] > 0 and c["export_s"] >= 0 for c in record["cases"])
    assert "measured peak (ru_maxrss)" in caplog.text and "memory estimate" in caplog.text


def test_ensemble_command_averages_probabilities(trained, tmp_path):
    heldout = trained["heldout"] / "imagesTr"
    folders = []
    for config in ("3d_fullres", "2d"):
        out = tmp_path / config
        args = ["predict", "-i", str(heldout), "-o", str(out), "-m", str(trained["results"]), "-c", config]
        assert main([*args, "--save-probabilities", "--no-tta"]) == 0
        folders.append(out)
    assert main(["ensemble", "-i", *map(str, folders), "-o", str(tmp_path / "ens")]) == 0
    p3d = np.load(folders[0] / "case_000.npz")["probabilities"].astype(np.float32)
    p2d = np.load(folders[1] / "case_000.npz")["probabilities"].astype(np.float32)
    expected = ((p3d + p2d) / 2).argmax(0)
    assert np.array_equal(read_image(tmp_path / "ens" / "case_000.nii.gz")[0], expected)


def _rotation_z(degrees: float) -> tuple[float, ...]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


def test_geometry_round_trip_and_native_dice_of_an_oracle(trained, tmp_path):
    """Anisotropic spacing, a rotated direction and a shifted origin come back exactly; Dice ~ 1."""
    shape = (14, 44, 40)
    spacing = (3.0, 0.8, 0.9)  # z, y, x: thick slices
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    label = (((zz - 20) / 12) ** 2 + ((yy - 17) / 9) ** 2 + ((xx - 18) / 10) ** 2 <= 1).astype(np.uint8)
    image = np.where(label > 0, 100.0, 10.0).astype(np.float32)
    geometry = Geometry(shape, spacing, (12.5, -40.0, 7.25), _rotation_z(30))
    inputs = tmp_path / "in"
    write_image(image, geometry, inputs / "scan_0000.nii.gz")
    mean, std = float(image.mean()), float(image.std())
    with open_model(trained["results"]) as model:
        trained_config = model.configuration("3d_fullres")
        predictor = ConfigurationPredictor(
            trained_config, ["0"], torch.device("cpu"), PredictOptions(tta=False)
        )
    predictor.networks = [ThresholdNet((55.0 - mean) / std)]
    from autoseg.inference.inputs import discover_inputs
    from autoseg.inference.run import predict_cases

    cases = discover_inputs(inputs, ["MRI"])
    assert [c.name for c in cases] == ["scan"]
    predict_cases(cases, [predictor], tmp_path / "out")
    written = tmp_path / "out" / "scan.nii.gz"
    assert read_geometry(written)[0] == read_geometry(inputs / "scan_0000.nii.gz")[0]
    pred, _ = read_image(written)
    assert dice_per_label(pred, label, [1])[1] > 0.95


def test_missing_channels_and_wrong_models_are_clear_errors(trained, tmp_path, capsys):
    inputs = tmp_path / "in"
    image = np.zeros((4, 8, 8), np.float32)
    geometry = Geometry((4, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_image(image, geometry, inputs / "a_0001.nii.gz")
    write_image(image, geometry, inputs / "b_0001.nii.gz")
    code = main(["predict", "-i", str(inputs), "-o", str(tmp_path / "o"), "-m", str(trained["results"])])
    err = capsys.readouterr().err
    assert code == 1 and "a: missing channel" in err and "b: missing channel" in err
    code = main(["predict", "-i", str(inputs), "-o", str(tmp_path / "o"), "-m", str(tmp_path)])
    assert code == 1 and "not a model folder" in capsys.readouterr().err
    args = ["predict", "-i", str(inputs), "-o", str(tmp_path / "o"), "-m", str(trained["results"])]
    assert main([*args, "-c", "3d_lowres"]) == 1
    assert "trained configurations here: 2d, 3d_fullres" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
