"""Exported networks (ONNX, torch.export) reproduce torch; exports are cached by checkpoint hash;
TorchScript, deprecated by torch, is refused with a message naming its replacement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoseg.inference import backends
from autoseg.inference.backends import ExportError, export_network, load_runner
from autoseg.inference.sliding_window import predict_sliding_window
from autoseg.nets import build_network

ARCH = {
    "network": "plain",
    "n_stages": 3,
    "features_per_stage": [4, 8, 16],
    "kernel_sizes": [[3, 3, 3]] * 3,
    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
}
META = {"in_channels": 1, "patch_size": [16, 16, 16]}


def _fold(tmp_path: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(seed)
    net = build_network(ARCH, 1, 3).eval()
    checkpoint = tmp_path / "fold_0" / "checkpoint_final.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network": net.state_dict()}, checkpoint)
    return checkpoint, net


@pytest.mark.parametrize(
    ("kind", "backend"), [("onnx", "onnxruntime"), ("torch-export", "torch-export"), ("onnx", "openvino")]
)
def test_export_is_equivalent_and_predicts_like_torch(tmp_path: Path, kind: str, backend: str) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino is an optional extra (a 59 MB wheel), not in dev")
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    checkpoint, net = _fold(tmp_path)
    record = export_network(checkpoint, net, META, kind)
    assert record["check"]["ok"] and record["check"]["dice_argmax"] == 1.0
    assert record["check"]["max_abs_diff_random"] <= 1e-3
    assert record["checkpoint_sha256"] == backends.sha256_of(checkpoint)
    assert checkpoint.with_suffix(backends.EXPORTS[kind]).is_file()

    runner = load_runner(checkpoint, net, META, backend, torch.device("cpu"))
    assert runner is not net
    image = torch.randn(1, 30, 20, 18, generator=torch.Generator().manual_seed(3))
    reference = predict_sliding_window(net, image, (16, 16, 16), 3, mirror_axes=(0, 1), batch_size=4)
    exported = predict_sliding_window(runner, image, (16, 16, 16), 3, mirror_axes=(0, 1), batch_size=4)
    assert (exported - reference).abs().max() < 1e-3
    assert (exported.argmax(0) == reference.argmax(0)).float().mean() > 0.999


def test_export_is_cached_by_checkpoint_hash(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    checkpoint, net = _fold(tmp_path)
    first = export_network(checkpoint, net, META, "onnx")
    onnx_file = checkpoint.with_suffix(".onnx")
    stamp = onnx_file.stat().st_mtime_ns
    assert export_network(checkpoint, net, META, "onnx") == first
    assert onnx_file.stat().st_mtime_ns == stamp  # reused, not exported again
    _, retrained = _fold(tmp_path, seed=5)  # a new checkpoint at the same path
    second = export_network(checkpoint, retrained, META, "onnx")
    assert second["checkpoint_sha256"] != first["checkpoint_sha256"] and second["sha256"] != first["sha256"]


def test_export_that_differs_is_refused_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint, net = _fold(tmp_path)
    monkeypatch.setattr(backends, "MAX_ABS_DIFF", -1.0)  # no export can pass
    with pytest.raises(ExportError, match=r"does not reproduce the torch network.*nothing kept"):
        export_network(checkpoint, net, META, "torch-export")
    assert not checkpoint.with_suffix(".pt2").exists()
    assert not checkpoint.with_suffix(".pt2.json").exists()


def test_torchscript_is_refused_naming_torch_export(tmp_path: Path) -> None:
    checkpoint, net = _fold(tmp_path)
    with pytest.raises(
        ValueError, match=r"--backend torchscript: TorchScript .*deprecated.*use torch-export"
    ):
        load_runner(checkpoint, net, META, "torchscript", torch.device("cpu"))
    with pytest.raises(ValueError, match=r"export 'torchscript': .*torch-export"):
        export_network(checkpoint, net, META, "torchscript")
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint_final.pt"]  # nothing written


def test_unknown_backend_suggests_the_nearest(tmp_path: Path) -> None:
    checkpoint, net = _fold(tmp_path)
    with pytest.raises(ValueError, match=r"did you mean 'onnxruntime'"):
        load_runner(checkpoint, net, META, "onnxruntim", torch.device("cpu"))


def test_auto_picks_the_fastest_installed_cpu_backend_and_torch_on_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    missing: set[str] = set()
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    cpu = torch.device("cpu")
    assert backends.choose_backend("auto", torch.device("cuda")) == (
        "torch", "auto: torch on cuda (the exported backends run on the CPU)"
    )  # fmt: skip
    assert backends.choose_backend("onnxruntime", cpu) == ("onnxruntime", "asked for")
    pytest.importorskip("onnxruntime")
    missing.add("openvino")
    assert backends.choose_backend("auto", cpu)[0] == "onnxruntime"
    missing.add("onnxruntime")
    backend, why = backends.choose_backend("auto", cpu)
    assert backend == "torch" and "pip install 'autoseg[openvino]'" in why
    missing.clear()
    if real("openvino") is not None:
        assert backends.choose_backend("auto", cpu)[0] == "openvino"


def test_auto_backend_repeats_exactly_and_matches_the_torch_reference(trained, tmp_path: Path) -> None:
    """Predict with --backend auto: the choice, recorded; bit-identical reruns; torch's masks."""
    import json

    import numpy as np

    from autoseg.cli import main
    from autoseg.io.images import read_image

    heldout = trained["heldout"] / "imagesTr"
    common = [
        "-i",
        str(heldout),
        "-m",
        str(trained["results"]),
        "-c",
        "3d_fullres",
        "-f",
        "0",
        "--device",
        "cpu",
    ]
    runs = {"a": ["--backend", "auto"], "b": ["--backend", "auto"], "torch": []}  # torch: the default
    for name, extra in runs.items():
        assert main(["predict", *common, "-o", str(tmp_path / name), "--save-probabilities", *extra]) == 0
    chosen = backends.choose_backend("auto", torch.device("cpu"))[0]
    record = json.loads((tmp_path / "a" / "predict.json").read_text())
    assert record["backend"] == {"3d_fullres": chosen} and record["options"]["backend"] == "auto"
    agree, total, foreground = 0, 0, 0
    for case in ("case_000", "case_001", "case_002"):
        a, b, ref = (read_image(tmp_path / n / f"{case}.nii.gz")[0] for n in runs)
        pa, pb = (np.load(tmp_path / n / f"{case}.npz")["probabilities"] for n in ("a", "b"))
        assert np.array_equal(a, b) and np.array_equal(pa, pb)  # run to run: exactly the same
        agree, total, foreground = (
            agree + int((a == ref).sum()),
            total + a.size,
            foreground + int((ref > 0).sum()),
        )
    assert foreground > 0.01 * total  # the model segments something: the agreement is not all background
    assert agree / total >= 0.9999, f"{chosen} masks agree with torch's on {agree / total:.6f} of the voxels"


def test_a_read_only_model_is_exported_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    pytest.importorskip("onnxruntime")
    checkpoint, net = _fold(tmp_path / "model")
    real_access = os.access
    read_only = checkpoint.parent  # chmod is not enough when the tests run as root
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == read_only else real_access(p, mode))
    monkeypatch.setenv("AUTOSEG_CACHE", str(tmp_path / "cache"))
    runner = load_runner(checkpoint, net, META, "onnxruntime", torch.device("cpu"))
    cached = tmp_path / "cache" / "exports" / backends.sha256_of(checkpoint)[:16] / "checkpoint_final.onnx"
    assert cached.is_file() and not checkpoint.with_suffix(".onnx").exists()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.inference_mode():
        assert (runner(x) - net(x)).abs().max() < 1e-3
    stamp = cached.stat().st_mtime_ns
    load_runner(checkpoint, net, META, "onnxruntime", torch.device("cpu"))
    assert cached.stat().st_mtime_ns == stamp  # found again, not exported again
