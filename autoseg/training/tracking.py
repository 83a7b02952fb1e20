"""Experiment tracking in MLflow, beside TensorBoard: ``trainer.loggers=[tensorboard,mlflow]``.

One MLflow run per fold, written by rank 0:

- **params**: the resolved config, flattened (``trainer.lr``, ``plans.3d_fullres.patch_size``, ...);
- **tags**: dataset, plans, configuration, fold, the git commit of the autoseg code (``unknown``
  outside a git checkout), and the fold folder;
- **metrics** per epoch (``step`` = epoch): losses, learning rate, EMA and per-class pseudo-Dice,
  epoch time, data wait, samples/s;
- **artifacts** at the end: progress.png, run.json, history.json and the final validation's
  summary.json when written.

Where runs go: ``trainer.mlflow_tracking_uri`` if set, else ``MLFLOW_TRACKING_URI``, else a local
file store ``<results>/mlruns`` (``mlflow ui --backend-store-uri <results>/mlruns``). MLflow 3 keeps
its file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``: autoseg
sets that (unless you set it yourself) for a ``file:`` store only, which needs no database and is safe
when several folds write at once. For a database or a tracking server give its URI
(``sqlite:///path/mlflow.db`` needs the full ``pip install mlflow``; ``http://host:5000``). The experiment
is ``trainer.mlflow_experiment`` if set, else the dataset's name; a sweep groups its runs by
passing :func:`experiment_overrides`. A resumed fold continues its MLflow run (the run id is kept in
``<fold>/mlflow_run.json``).

mlflow is an optional extra (``pip install 'autoseg[mlflow]'``, which installs mlflow-skinny);
asking for the logger without it fails before training with that command.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoseg.training.config import TrainerConfig
from autoseg.training.spec import FoldSpec
from autoseg.utils.files import write_json

__all__ = ["MlflowTracker", "experiment_overrides", "git_commit", "open_tracker", "tracked", "tracking_uri"]

RUN_FILE = "mlflow_run.json"
_PARAM_VALUE_MAX = 500  # MLflow's smallest limit across its stores
_BATCH = 100  # params per log_batch call (MLflow's limit)
_UNSAFE = re.compile(r"[^\w\-./ ]")
log = logging.getLogger("autoseg.train")

_METRICS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "lr": "lr",
    "ema_dice": "dice/ema",
    "epoch_time": "time/epoch_s",
    "data_wait": "time/data_wait_s",
    "samples_per_s": "time/samples_per_s",
    "step_time": "time/step_s",
    "skipped_steps": "train/skipped_steps",
    "peak_gpu_mem_gb": "memory/peak_gpu_gb",
}


def experiment_overrides(experiment: str, uri: str | None = None) -> list[str]:
    """The ``trainer.*`` overrides that put a training's MLflow run into ``experiment`` (at ``uri``).

    For a sweep: every training it launches gets these, so its runs are grouped in one experiment.

    Example:
        >>> experiment_overrides("sweep-2026-12", "file:/results/mlruns")
        ['trainer.mlflow_experiment=sweep-2026-12', 'trainer.mlflow_tracking_uri=file:/results/mlruns']
    """
    out = [f"trainer.mlflow_experiment={experiment}"]
    return out + ([f"trainer.mlflow_tracking_uri={uri}"] if uri else [])


def tracking_uri(configured: str | None, results: Path, env: Mapping[str, str] | None = None) -> str:
    """The tracking URI: ``configured``, else ``MLFLOW_TRACKING_URI`` in ``env``, else
    ``file:<results>/mlruns``."""
    env = os.environ if env is None else env
    if configured:
        return configured
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    return (results.resolve() / "mlruns").as_uri()


def git_commit() -> str:
    """The commit of the autoseg code when it runs from a git checkout (``+dirty`` when changed), else
    ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys and string values (lists as JSON), cut to MLflow's value limit."""
    if isinstance(data, Mapping):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    text = json.dumps(data) if isinstance(data, list | tuple) else str(data)
    return {_UNSAFE.sub("_", prefix[:-1]): text[:_PARAM_VALUE_MAX]}


def _import_mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ValueError(
            "trainer.loggers has mlflow but mlflow is not installed: pip install 'autoseg[mlflow]'"
        ) from None
    return MlflowClient


class MlflowTracker:
    """The MLflow run of one fold (module docstring); rank 0 alone makes one.

    Example:
        >>> tracker = MlflowTracker(spec, "file:/results/mlruns", None, resolved_config)  # doctest: +SKIP
        >>> tracker.epoch(record)  # doctest: +SKIP
        >>> tracker.finish("FINISHED")  # doctest: +SKIP
    """

    def __init__(
        self,
        spec: FoldSpec,
        uri: str,
        experiment: str | None,
        config: Mapping[str, Any],
        label_names: list[str],
        resume: bool = False,
    ) -> None:
        client_class = _import_mlflow()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # module docstring
        self.folder = spec.output
        self.uri = uri
        self.client = client_class(tracking_uri=uri)
        self.experiment = experiment or spec.plans.dataset_name
        self.label_names = label_names
        experiment_id = self._experiment_id()
        previous = self._previous_run(uri) if resume else None
        if previous is not None:
            self.run_id = previous
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {
            "dataset": spec.plans.dataset_name,
            "plans": spec.plans.plans_name,
            "configuration": spec.configuration,
            "fold": str(spec.fold),
            "git_commit": git_commit(),
            "fold_folder": str(spec.output),
            "mlflow.runName": f"{spec.configuration}-fold_{spec.fold}",
        }
        run = self.client.create_run(experiment_id, tags=tags)
        self.run_id = run.info.run_id
        write_json(self.folder / RUN_FILE, {"run_id": self.run_id, "tracking_uri": uri})
        self._log_params(_flatten(config))

    def _experiment_id(self) -> str:
        """The experiment's id, created when missing (by another fold at the same time: then found)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(self.experiment))
        except MlflowException:  # created meanwhile by a parallel fold
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return str(found.experiment_id)

    def _previous_run(self, uri: str) -> str | None:
        """The run id of the interrupted run, when it was tracked at the same URI and still exists."""
        path = self.folder / RUN_FILE
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if saved.get("tracking_uri") != uri:
            return None
        try:
            return str(self.client.get_run(saved["run_id"]).info.run_id)
        except Exception:  # deleted from the store: a new run
            return None

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(params.items())]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])

    def epoch(self, record: Mapping[str, Any]) -> None:
        """Log one epoch's numbers at step = epoch."""
        from mlflow.entities import Metric

        stamp, step = int(time.time() * 1000), int(record["epoch"])
        values = {name: record[key] for key, name in _METRICS.items() if record.get(key) is not None}
        for label, dice in zip(self.label_names, record.get("pseudo_dice", []), strict=False):
            values[f"dice/{_UNSAFE.sub('_', label)}"] = dice
        metrics = [Metric(k, float(v), stamp, step) for k, v in values.items() if v == v]  # NaN left out
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str = "FINISHED") -> None:
        """Upload the run's artifacts (those that exist) and close the run with ``status``
        (FINISHED, FAILED or KILLED)."""
        for name in ("progress.png", "run.json", "history.json"):
            if (self.folder / name).is_file():
                self.client.log_artifact(self.run_id, str(self.folder / name))
        summary = self.folder / "validation" / "summary.json"
        if summary.is_file():
            self.client.log_artifact(self.run_id, str(summary), artifact_path="validation")
        self.client.set_terminated(self.run_id, status=status)


def open_tracker(
    spec: FoldSpec,
    cfg: TrainerConfig,
    config: Mapping[str, Any],
    label_names: Sequence[str],
    resume: bool,
) -> MlflowTracker | None:
    """The fold's MLflow run when ``cfg.loggers`` has ``mlflow``, else None.

    The default store is ``<results>/mlruns``; ``spec.output`` is ``<results>/<dataset>/<plans>/<config>/
    fold_<k>``.
    """
    if "mlflow" not in cfg.loggers:
        return None
    uri = tracking_uri(cfg.mlflow_tracking_uri, spec.output.parents[3])
    tracker = MlflowTracker(spec, uri, cfg.mlflow_experiment, config, list(label_names), resume)
    log.info("MLflow: experiment %r, run %s at %s", tracker.experiment, tracker.run_id, uri)
    return tracker


@contextmanager
def tracked(tracker: MlflowTracker | None) -> Iterator[None]:
    """Close ``tracker``'s run after the block: FINISHED, FAILED after an exception, KILLED after Ctrl-C.

    A failure of the store while closing after an error is logged, so it does not hide that error.
    """
    if tracker is None:
        yield
        return
    try:
        yield
    except BaseException as err:
        try:
            tracker.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        except Exception as close_error:
            log.warning("MLflow: could not close run %s: %s", tracker.run_id, close_error)
        raise
    tracker.finish("FINISHED")
