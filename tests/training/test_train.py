"""Training end to end on CPU: the model learns an easy task, and resume is exact."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autoseg.planning.splits import make_splits
from autoseg.training.checkpoint import load_checkpoint
from autoseg.training.config import TrainerConfig
from autoseg.training.setup import FoldSpec, fold_cases, train_fold
from tests.presets import fast_overrides, fast_trainer


def fold_spec(easy_task: tuple[Path, dict], output: Path) -> FoldSpec:
    pre, plans = easy_task
    names = list(plans.case_names)
    train, val = fold_cases(make_splits(names, 5), 0, names)
    return FoldSpec(pre, plans, "3d_fullres", 0, tuple(train), tuple(val), output)


def test_learns_an_easy_task(easy_task, tmp_path):
    cfg = fast_trainer(epochs=6, val_iterations=2)
    spec = fold_spec(easy_task, tmp_path / "fold_0")
    state = train_fold(spec, cfg, torch.device("cpu"))
    summary = json.loads((spec.output / "validation" / "summary.json").read_text())
    assert summary["foreground_mean"] > 0.8, summary["mean"]
    assert len(summary["cases"]) == len(spec.val_cases)
    losses = [r["train_loss"] for r in state.history]
    assert losses[-1] < losses[0]
    for name in (
        "checkpoint_latest.pt",
        "checkpoint_best.pt",
        "checkpoint_final.pt",
        "progress.png",
        "training_log.txt",
        "run.json",
        "history.json",
    ):
        assert (spec.output / name).is_file(), name
    assert any((spec.output / "tensorboard").iterdir())
    assert (spec.output.parent / "plans.json").is_file()
    run = json.loads((spec.output / "run.json").read_text())
    assert run["versions"]["torch"] and run["trainer"]["seed"] == 1
    # an untrained network of the same seed cannot do this
    untrained = train_fold(
        replace(spec, output=tmp_path / "untrained"), replace(cfg, epochs=1, lr=0.0), torch.device("cpu")
    )
    first = json.loads((tmp_path / "untrained" / "validation" / "summary.json").read_text())
    assert first["foreground_mean"] < 0.5 and untrained.epoch == 1


class InterruptError(Exception):
    pass


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_resume_is_exact(easy_task, tmp_path, amp):
    cfg = fast_trainer(
        epochs=3, iterations_per_epoch=3, amp=amp, deterministic=True, final_validation=False, seed=5
    )
    device = torch.device("cpu")
    straight = fold_spec(easy_task, tmp_path / "straight")
    train_fold(straight, cfg, device)

    def stop_after_first_epoch(state, record):
        if state.epoch == 1:
            raise InterruptError

    resumed = fold_spec(easy_task, tmp_path / "resumed")
    with pytest.raises(InterruptError):
        train_fold(resumed, cfg, device, extra_callbacks=(stop_after_first_epoch,))
    assert load_checkpoint(resumed.output / "checkpoint_latest.pt")["state"]["epoch"] == 1
    state = train_fold(resumed, cfg, device, resume=True)
    assert state.epoch == 3 and [r["epoch"] for r in state.history] == [0, 1, 2]
    a = load_checkpoint(straight.output / "checkpoint_final.pt")
    b = load_checkpoint(resumed.output / "checkpoint_final.pt")
    for key, tensor in a["network"].items():
        assert torch.equal(tensor, b["network"][key]), key
    assert [r["train_loss"] for r in a["state"]["history"]] == [
        r["train_loss"] for r in b["state"]["history"]
    ]


def test_resume_without_checkpoint_is_a_clear_error(easy_task, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_fold(
            fold_spec(easy_task, tmp_path / "none"), TrainerConfig(epochs=1), torch.device("cpu"), resume=True
        )


def test_autoseg_train_with_cpu_amp_learns_like_fp32(easy_task, tmp_path):
    """``autoseg train ... trainer.amp=true trainer.amp_dtype=bfloat16`` on the CPU: bf16 autocast
    through the same loop, to the Dice threshold of the fp32 test (the CPU twin of the GPU's bf16;
    ``amp_dtype=auto`` leaves it off on CPUs without bf16 in hardware; torch.compile's CPU twin:
    tests/training/test_step.py, where a tiny network keeps inductor's compile time short)."""
    from autoseg.cli import main

    pre, _ = easy_task
    raw = pre.parent.parent / "raw" / pre.name
    args = ["train", str(raw), "3d_fullres", "0", f"paths.preprocessed={pre.parent}"]
    args += [
        f"paths.results={tmp_path}",
        "--device",
        "cpu",
        *fast_overrides(epochs=6, val_iterations=2, amp=True),
        "trainer.amp_dtype=bfloat16",
    ]
    assert main(args) == 0
    fold = tmp_path / pre.name / "default" / "3d_fullres" / "fold_0"
    run = json.loads((fold / "run.json").read_text())
    assert run["precision"] == {"autocast": "bfloat16", "grad_scaler": False, "compile": False}
    assert run["augment_on"]["used"] == "workers"
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert summary["foreground_mean"] > 0.8, summary["mean"]
    history = json.loads((fold / "history.json").read_text())
    assert all(
        r["step_time"] > 0 and r["skipped_steps"] == 0 and r["peak_gpu_mem_gb"] is None for r in history
    )
    assert "autocast bfloat16" in (fold / "training_log.txt").read_text()


@pytest.mark.skipif(
    not os.environ.get("AUTOSEG_COMPILE_E2E"),
    reason="about 3 min on 2 cores (inductor compiles the U-Net in every run); AUTOSEG_COMPILE_E2E=1 runs it",
)
def test_compiled_amp_training_learns_and_resumes_exactly(easy_task, tmp_path):
    """trainer.amp + trainer.compile on the CPU: the fp32 Dice threshold, and an exact resume."""
    cfg = fast_trainer(epochs=6, val_iterations=2, amp=True, compile=True, deterministic=True)
    straight = fold_spec(easy_task, tmp_path / "straight")
    train_fold(straight, cfg, torch.device("cpu"))
    summary = json.loads((straight.output / "validation" / "summary.json").read_text())
    assert summary["foreground_mean"] > 0.8, summary["mean"]

    def stop_after_third_epoch(state, record):
        if state.epoch == 3:
            raise InterruptError

    resumed = fold_spec(easy_task, tmp_path / "resumed")
    short = replace(cfg, final_validation=False)
    with pytest.raises(InterruptError):
        train_fold(resumed, short, torch.device("cpu"), extra_callbacks=(stop_after_third_epoch,))
    train_fold(resumed, short, torch.device("cpu"), resume=True)
    a = load_checkpoint(straight.output / "checkpoint_final.pt")
    b = load_checkpoint(resumed.output / "checkpoint_final.pt")
    for key, tensor in a["network"].items():
        assert torch.equal(tensor, b["network"][key]), key


def test_a_trainer_patch_size_is_written_into_the_folds_plans(easy_task, tmp_path):
    """The model predicts with the patch its plans record: a trainer override lands there, never only
    in the checkpoint; a fold of another patch, or a plans.json that lost the override, is refused."""
    from autoseg.inference.model import open_model
    from autoseg.inference.predictor import ConfigurationPredictor

    planned = easy_task[1].configuration("3d_fullres").patch_size
    patch = (16, 16, 16)
    assert planned != patch
    cfg = fast_trainer(epochs=1, iterations_per_epoch=2, final_validation=False, patch_size=patch)
    spec = fold_spec(easy_task, tmp_path / "default" / "3d_fullres" / "fold_0")
    train_fold(spec, cfg, torch.device("cpu"))
    copy = json.loads((spec.output.parent / "plans.json").read_text())
    assert copy["configurations"]["3d_fullres"]["patch_size"] == list(patch)
    assert copy["overrides"][-1] == "3d_fullres.patch_size=[16, 16, 16] (trainer.patch_size)"
    assert json.loads((spec.output / "run.json").read_text())["patch_size"] == list(patch)
    with open_model(tmp_path) as model:
        predictor = ConfigurationPredictor(model.configuration("3d_fullres"), ["0"], torch.device("cpu"))
    assert list(predictor.patch_size) == list(patch)
    with pytest.raises(ValueError, match=r"records patch_size \[16, 16, 16\].*fold 1 trains with"):
        train_fold(replace(spec, fold=1, output=spec.output.parent / "fold_1"), replace(cfg, patch_size=None),
                   torch.device("cpu"))  # fmt: skip
    assert not (spec.output.parent / "fold_1" / "run.json").exists()
    copy["configurations"]["3d_fullres"]["patch_size"] = list(planned)
    (spec.output.parent / "plans.json").write_text(json.dumps(copy))
    with (
        open_model(tmp_path) as model,
        pytest.raises(ValueError, match=r"trained with patch_size \[16, 16, 16\]"),
    ):
        ConfigurationPredictor(model.configuration("3d_fullres"), ["0"], torch.device("cpu"))
