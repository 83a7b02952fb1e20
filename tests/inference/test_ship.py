"""Models that ship: export-model with ONNX / TorchScript and a model card, the challenge container's
entrypoint on a temporary folder, and predict's channel-count refusal (shared trained fixture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from autoseg.cli import main
from autoseg.evaluation.metrics import dice_per_label
from autoseg.export.model_card import TO_FILL, read_model_card
from autoseg.inference.model import open_model
from autoseg.io.images import Geometry, read_geometry, read_image, write_image


def _export(trained: dict[str, Path], *extra: str) -> None:
    paths = [f"paths.results={trained['root'] / 'results'}"]
    assert main(["export-model", str(trained["raw"]), "-c", "3d_fullres", "-f", "0", *extra, *paths]) == 0


def test_export_with_onnx_torchscript_card_and_container(trained, tmp_path):
    context = tmp_path / "container"
    _export(
        trained, "--onnx", "--torchscript", "--container", str(context), "--container-backend", "onnxruntime"
    )
    archive = context / "model.zip"
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    fold = "default/3d_fullres/fold_0"
    for name in ("checkpoint_final.onnx", "checkpoint_final.onnx.json", "checkpoint_final.ts"):
        assert f"{fold}/{name}" in names
    assert {"model_card.json", "MODEL_CARD.md"} <= names

    with open_model(archive) as model:
        card = read_model_card(model.root)
        markdown = (model.root / "MODEL_CARD.md").read_text()
    assert card is not None
    assert card["input"]["num_channels"] == 1 and card["input"]["file_ending"] == ".nii.gz"
    config = card["configurations"]["3d_fullres"]
    assert config["folds"] == ["0"] and config["cv_dice_per_class"]["class_1"] > 0.5
    assert config["training"]["0"]["epochs"] == 5 and config["patch_size"]
    assert card["intended_use"] == TO_FILL and card["licence"] == TO_FILL
    assert sorted(e["kind"] for e in card["exports"]) == ["onnx", "torchscript"]
    for export in card["exports"]:  # checked on a real training case
        assert export["check"]["dice_argmax"] == 1.0 and export["check"]["dice_case"] == "real"
        assert export["check"]["max_abs_diff_random"] < 1e-3
    assert "Intended use" in markdown and "class_1" in markdown

    dockerfile = (context / "Dockerfile").read_text()
    assert "FROM ${AUTOSEG_IMAGE}" in dockerfile and "entrypoint.py" in dockerfile
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint:
        lint = subprocess.run([hadolint, str(context / "Dockerfile")], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    # the entrypoint on a temporary /input: arbitrary file names, two file types
    inputs, outputs = tmp_path / "input", tmp_path / "output"
    heldout = trained["heldout"]
    image, geometry = read_image(heldout / "imagesTr" / "case_000_0000.nii.gz")
    write_image(image, geometry, inputs / "scan-a.mha")
    (inputs / "nested").mkdir()
    shutil.copy(heldout / "imagesTr" / "case_001_0000.nii.gz", inputs / "nested" / "scan-b.nii.gz")
    env = dict(os.environ, AUTOSEG_INPUT=str(inputs), AUTOSEG_OUTPUT=str(outputs), AUTOSEG_DEVICE="cpu")
    env["AUTOSEG_NO_TTA"] = "1"
    run = subprocess.run(
        [sys.executable, str(context / "entrypoint.py"), "--backend", "onnxruntime"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "model card:" in run.stdout
    for name, source, case in (
        ("scan-a.mha", inputs / "scan-a.mha", "case_000"),
        ("scan-b.nii.gz", inputs / "nested" / "scan-b.nii.gz", "case_001"),
    ):
        assert read_geometry(outputs / name)[0] == read_geometry(source)[0]
        label = read_image(heldout / "labelsTr" / f"{case}.nii.gz")[0]
        assert dice_per_label(read_image(outputs / name)[0], label, [1])[1] > 0.8
    times = (outputs / "time_per_case.tsv").read_text().splitlines()
    assert len([t for t in times if t.startswith("scan-")]) == 2 and "s per case" in times[-1]
    assert json.loads((outputs / "predict.json").read_text())["failed"] == 0


def test_predict_prints_the_card_and_refuses_a_wrong_channel_count(trained, tmp_path, capsys):
    context = tmp_path / "ctx"
    _export(trained, "--container", str(context))
    capsys.readouterr()
    inputs = tmp_path / "in"
    geometry = Geometry((6, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    for channel in (0, 1):
        write_image(np.zeros((6, 8, 8), np.float32), geometry, inputs / f"x_{channel:04d}.nii.gz")
    out = tmp_path / "o"
    code = main(["predict", "-i", str(inputs), "-o", str(out), "-m", str(context / "model.zip")])
    captured = capsys.readouterr()
    assert code == 1
    assert "model card: " in captured.out and "input 1 channel(s)" in captured.out
    assert "x: 2 channel file(s) given, the model needs 1" in captured.err
    assert not out.exists()
