"""MLflow tracking beside TensorBoard: a short training logs params, tags, per-epoch metrics and
artifacts, read back through mlflow's own API; a resumed fold continues its run; the store and the
experiment come from the config or MLFLOW_TRACKING_URI."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autoseg.training.config import TrainerConfig
from autoseg.training.setup import FoldSpec, train_fold
from autoseg.training.tracking import experiment_overrides, tracking_uri
from tests.training.test_train import fold_spec

mlflow = pytest.importorskip("mlflow")  # in the dev extra: CI has it
from mlflow.tracking import MlflowClient  # noqa: E402

CFG = TrainerConfig(
    epochs=3,
    iterations_per_epoch=2,
    val_iterations=1,
    patch_size=(16, 16, 16),
    batch_size=2,
    num_workers=0,
    amp=False,
    deterministic=True,
    tta_mirroring=False,
    seed=5,
    loggers=("tensorboard", "mlflow"),
)


def _spec(easy_task: tuple[Path, dict], results: Path) -> FoldSpec:
    """The fold under ``results/<dataset>/default/3d_fullres/fold_0`` (so ``results`` is the store's home)."""
    spec = fold_spec(easy_task, results)
    return replace(spec, output=results / spec.plans.dataset_name / "default" / "3d_fullres" / "fold_0")


class StopError(Exception):
    pass


def test_training_run_read_back_through_mlflow_and_resume_continues_it(easy_task, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tmp_path / "results"
    spec = _spec(easy_task, results)
    config = {"trainer": CFG.to_dict(), "paths": {"results": str(results)}}

    def stop_after_epoch_1(state, record):
        if state.epoch == 2:
            raise StopError

    with pytest.raises(StopError):
        train_fold(spec, CFG, torch.device("cpu"), config=config, extra_callbacks=(stop_after_epoch_1,))
    client = MlflowClient(tracking_uri=(results / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(spec.plans.dataset_name)
    assert experiment is not None
    (interrupted,) = client.search_runs([experiment.experiment_id])
    assert interrupted.info.status == "FAILED"
    train_fold(spec, CFG, torch.device("cpu"), resume=True, config=config)

    (run,) = client.search_runs([experiment.experiment_id])  # the same run, continued
    assert run.info.run_id == interrupted.info.run_id and run.info.status == "FINISHED"
    assert run.data.params["trainer.lr"] == "0.01" and run.data.params["trainer.epochs"] == "3"
    assert run.data.params["paths.results"] == str(results)
    tags = run.data.tags
    assert (tags["dataset"], tags["plans"], tags["configuration"], tags["fold"]) == (
        spec.plans.dataset_name,
        "default",
        "3d_fullres",
        "0",
    )
    assert tags["git_commit"] != ""
    history = json.loads((spec.output / "history.json").read_text())
    train_loss = client.get_metric_history(run.info.run_id, "loss/train")
    assert sorted((m.step, m.value) for m in train_loss) == [
        (r["epoch"], pytest.approx(r["train_loss"])) for r in history
    ]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dice/ema")] == [0, 1, 2]
    label = spec.plans.labels.output_names[-1]
    assert len(client.get_metric_history(run.info.run_id, f"dice/{label}")) == 3
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"progress.png", "run.json", "history.json", "validation"} <= artifacts
    local = Path(client.download_artifacts(run.info.run_id, "run.json", str(tmp_path / "down")))
    assert json.loads(local.read_text())["trainer"]["loggers"] == ["tensorboard", "mlflow"]
    assert any((spec.output / "tensorboard").iterdir())  # TensorBoard still written beside it


def test_store_and_experiment_from_config_or_environment(easy_task, tmp_path, monkeypatch):
    env_store = (tmp_path / "env-store").as_uri()
    assert tracking_uri(None, tmp_path, {"MLFLOW_TRACKING_URI": env_store}) == env_store
    assert tracking_uri("file:/x", tmp_path, {"MLFLOW_TRACKING_URI": env_store}) == "file:/x"
    assert tracking_uri(None, tmp_path, {}) == (tmp_path / "mlruns").as_uri()
    assert experiment_overrides("sweep-1") == ["trainer.mlflow_experiment=sweep-1"]
    cfg = TrainerConfig.from_mapping(
        {
            "epochs": 1,
            "loggers": ["mlflow"],
            **dict(o.removeprefix("trainer.").split("=") for o in experiment_overrides("sweep-1")),
        }
    )
    assert cfg.mlflow_experiment == "sweep-1" and cfg.loggers == ("mlflow",)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_store)
    cfg = replace(CFG, epochs=1, iterations_per_epoch=1, final_validation=False, mlflow_experiment="sweep-1")
    spec = _spec(easy_task, tmp_path / "results")
    train_fold(spec, cfg, torch.device("cpu"))
    client = MlflowClient(tracking_uri=env_store)
    (run,) = client.search_runs([client.get_experiment_by_name("sweep-1").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["configuration"] == "3d_fullres"
    assert not (tmp_path / "results" / "mlruns").exists()


def test_bad_logger_and_missing_mlflow_are_clear_errors(easy_task, tmp_path, monkeypatch):
    with pytest.raises(
        ValueError, match=r"loggers=\['wandb'\] must be distinct names among tensorboard, mlflow"
    ):
        TrainerConfig(loggers=("wandb",))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    spec = _spec(easy_task, tmp_path / "results")
    with pytest.raises(ValueError, match=r"pip install 'autoseg\[mlflow\]'"):
        train_fold(spec, replace(CFG, epochs=1), torch.device("cpu"))
