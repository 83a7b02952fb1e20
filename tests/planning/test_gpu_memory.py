"""``autoseg plan --gpu-memory auto``: the visible GPU's memory, recorded; a clear error without one."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from autoseg.cli import main
from autoseg.planning.gpu import parse_gpu_memory


def fake_gpus(monkeypatch: pytest.MonkeyPatch, sizes_gib: list[float]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(sizes_gib))
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: SimpleNamespace(total_memory=int(sizes_gib[i] * 1024**3), name=f"Fake GPU {i}"),
    )


def test_auto_without_a_gpu_is_a_clear_error(tiny_mr_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["plan", str(tiny_mr_dataset), f"paths.preprocessed={tmp_path}", "--no-preprocess"]
    assert main([*args, "--gpu-memory", "auto"]) == 1
    assert "--gpu-memory auto: no CUDA GPU is visible" in capsys.readouterr().err
    assert not list(tmp_path.rglob("plans.json"))
    with pytest.raises(ValueError, match="positive number of GB"):
        parse_gpu_memory("lots")


def test_auto_plans_for_the_smallest_visible_gpu_and_says_so(tiny_mr_dataset, tmp_path, monkeypatch):
    fake_gpus(monkeypatch, [80.0, 40.0])
    args = ["plan", str(tiny_mr_dataset), f"paths.preprocessed={tmp_path}", "--no-preprocess"]
    assert main([*args, "--gpu-memory", "auto", "--num-workers", "1"]) == 0
    plans = json.loads((tmp_path / tiny_mr_dataset.name / "default" / "plans.json").read_text())
    assert plans["planner"]["gpu_memory_gb"] == 40.0
    assert plans["planner"]["gpu_memory_source"] == "auto: Fake GPU 1, GPU 1 of 2 visible, 40.0 GiB"
    assert plans["configurations"]["3d_fullres"]["memory"]["gpu_memory_gb"] == 40.0
    assert parse_gpu_memory("24") == (24.0, "--gpu-memory")
