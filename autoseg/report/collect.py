"""Gather what a report shows from a run's artifacts (read only; only the plan's reasons are recomputed).

Sources: ``fingerprint.json`` and ``plans.json`` (preprocessed folder), every
``<config>/fold_<k>/{history.json, run.json, validation/}`` and ``<config>/cv_summary.json``,
and ``selection.json`` (results folder). A fold without history is listed as "not trained".

Example:
    >>> run = collect_run(pre / "Dataset004_Hippocampus", res / "Dataset004_Hippocampus")  # doctest: +SKIP
    >>> sorted(run.configurations)  # doctest: +SKIP
    ['2d', '3d_fullres']
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.contracts.plans import Plans

__all__ = ["ConfigurationRun", "FoldRun", "RunData", "collect_run", "config_hash", "git_commit"]


@dataclass
class FoldRun:
    """One fold: its epochs (history.json records), run.json and the folder of its validation."""

    fold: str
    folder: Path
    history: list[dict[str, Any]]
    run: dict[str, Any]

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def train_time(self) -> float:
        return float(sum(r.get("epoch_time", 0.0) for r in self.history))

    @property
    def data_wait(self) -> float:
        return float(sum(r.get("data_wait", 0.0) for r in self.history))

    @property
    def device(self) -> str:
        versions = self.run.get("versions", {})
        return str(versions.get("gpu") or versions.get("device") or "?")


@dataclass
class ConfigurationRun:
    """One trained configuration: its folds and the out-of-fold per-case metrics.

    ``cases``: ``[{"case", "fold", "metrics": {class: {"dice", "hd95", "nsd", ...}}}]``.
    """

    name: str
    folder: Path
    folds: dict[str, FoldRun] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


@dataclass
class RunData:
    """Everything a report shows."""

    dataset: str
    fingerprint: dict[str, Any]
    plans: Plans
    explain: list[str]
    configurations: dict[str, ConfigurationRun]
    selection: dict[str, Any] | None
    environment: dict[str, Any]
    model_root: Path


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def plan_reasons(plans: Plans) -> list[str]:
    """The ``autoseg plan --explain`` lines, recomputed from the plans' fingerprint and planner preset."""
    from autoseg.planning.plans import build_plans
    from autoseg.planning.presets import PlannerConfig

    if not plans.fingerprint or not plans.planner:
        return ["(the plans hold no fingerprint or planner preset; the reasons cannot be recomputed)"]
    _, explain = build_plans(
        dict(plans.fingerprint), PlannerConfig.from_mapping(dict(plans.planner)), plans.overrides
    )
    return list(explain.lines)


def _fold_cases(folder: Path) -> list[dict[str, Any]]:
    evaluation = _json(folder / "validation" / "evaluation.json")
    return list(evaluation.get("cases", [])) if evaluation else []


def configuration_run(folder: Path) -> ConfigurationRun:
    conf = ConfigurationRun(folder.name, folder)
    fold_dirs = sorted(folder.glob("fold_*"), key=lambda p: (len(p.name), p.name))
    case_fold: dict[str, str] = {}
    for fold_dir in fold_dirs:
        history = _json(fold_dir / "history.json")
        if history is None:
            continue
        fold = fold_dir.name.removeprefix("fold_")
        conf.folds[fold] = FoldRun(fold, fold_dir, list(history), _json(fold_dir / "run.json") or {})
        for case in _fold_cases(fold_dir):
            case_fold[case["case"]] = fold
    cv = _json(folder / "cv_summary.json")
    cases = cv["cases"] if cv else [c for f in fold_dirs for c in _fold_cases(f)]
    conf.cases = [{**c, "fold": case_fold.get(c["case"], "?")} for c in cases]
    if conf.cases:
        conf.classes = list(conf.cases[0]["metrics"])
    return conf


def git_commit() -> str | None:
    """The git commit of the autoseg checkout (``+dirty`` with local changes), None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def config_hash(config: Any) -> str:
    """The first 16 hex digits of the SHA-256 of the resolved config as canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _environment(configs: dict[str, ConfigurationRun]) -> dict[str, Any]:
    import platform

    runs = [f.run for c in configs.values() for f in c.folds.values() if f.run]
    first = runs[0] if runs else {}
    hashes = sorted({config_hash(r.get("config", {})) for r in runs})
    return {
        "versions": first.get("versions", {}),
        "devices": sorted({f.device for c in configs.values() for f in c.folds.values()}),
        "git_commit": git_commit() or "not a git checkout",
        "config_hashes": hashes,
        "trainer": first.get("trainer", {}),
        "report_host": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
    }


def collect_run(preprocessed: Path, model_root: Path, plans_name: str | None = None) -> RunData:
    """Read a run's artifacts.

    Args:
        preprocessed: ``<preprocessed>/<Dataset>`` (fingerprint.json, ``<plans>/plans.json``).
        model_root: ``<results>/<Dataset>`` (``<plans>/<config>/fold_<k>``, selection.json).
        plans_name: the plans to report (default: the selection's, else the only one trained).

    Raises:
        FileNotFoundError: no plans or no trained configuration, naming the folder and the command.
    """
    selection = _json(model_root / "selection.json")
    if plans_name is None:
        trained = sorted(p.name for p in model_root.glob("*") if p.is_dir() and list(p.glob("*/fold_*")))
        plans_name = (selection or {}).get("plans_name") or (trained[0] if len(trained) == 1 else None)
        if plans_name is None:
            raise FileNotFoundError(
                f"{model_root}: choose the plans with --plans-name (trained: {', '.join(trained) or 'none'});"
                " train with `autoseg train DATASET CONFIG FOLD`"
            )
    plans_file = preprocessed / plans_name / "plans.json"
    if not plans_file.is_file():
        plans_file = model_root / plans_name / "plans.json"  # the copy beside the model
    plans = Plans.load(plans_file)
    fingerprint = _json(preprocessed / "fingerprint.json") or dict(plans.fingerprint or {})
    if plans.fingerprint is None and fingerprint:
        plans = Plans.from_dict({**plans.raw, "fingerprint": fingerprint}, source=str(plans_file))
    base = model_root / plans_name
    configs = {
        p.name: configuration_run(p) for p in sorted(base.glob("*")) if p.is_dir() and list(p.glob("fold_*"))
    }
    configs = {k: v for k, v in configs.items() if v.folds}
    chosen = (selection or {}).get("configurations") or []
    ensemble = base / "ensembles" / "+".join(chosen) / "cv_summary.json"
    if len(chosen) > 1 and ensemble.is_file():  # the chosen ensemble's out-of-fold cases (no folds)
        name = " + ".join(chosen)
        conf = ConfigurationRun(name, ensemble.parent, cases=list(_json(ensemble)["cases"]))
        conf.cases = [{**c, "fold": "-"} for c in conf.cases]
        conf.classes = list(conf.cases[0]["metrics"]) if conf.cases else []
        configs[name] = conf
    if not configs:
        raise FileNotFoundError(f"{base}: no trained fold; train with `autoseg train DATASET CONFIG FOLD`")
    return RunData(
        dataset=plans.dataset_name,
        fingerprint=fingerprint,
        plans=plans,
        explain=plan_reasons(plans),
        configurations=configs,
        selection=selection,
        environment=_environment(configs),
        model_root=model_root,
    )
