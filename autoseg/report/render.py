"""Lay out a run's evidence (:class:`autoseg.report.collect.RunData`) as a :class:`Document`.

Sections: key figures, dataset fingerprint, plan and its reasons, training per configuration and
fold, cross-validation per class with bootstrap 95 % intervals and a per-case table (worst
first, with overlay thumbnails), find-best's candidates and choice, environment, and
optionally a comparison with another run (paired Wilcoxon per class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autoseg.report.collect import ConfigurationRun, RunData
from autoseg.report.document import Cell, Document
from autoseg.report.figures import curves_png, dice_strip_png, file_uri, histogram_png, thumbnail_uri
from autoseg.report.leaderboard import find_leaderboards, leaderboard_section
from autoseg.report.stats import bootstrap_ci, paired_wilcoxon

__all__ = ["case_values", "primary_configuration", "render_report"]

METRIC_NAMES = {"dice": "Dice", "hd95": "HD95 [mm]", "nsd": "surface Dice"}
AXES = ("z", "y", "x")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def case_values(conf: ConfigurationRun, class_name: str, metric: str = "dice") -> dict[str, float | None]:
    """Case -> the metric of one class (None where undefined, e.g. a class absent from both)."""
    return {c["case"]: c["metrics"].get(class_name, {}).get(metric) for c in conf.cases}


def _mean_dice(case: dict[str, Any]) -> float:
    values = [m.get("dice") for m in case["metrics"].values() if m.get("dice") is not None]
    return sum(values) / len(values) if values else math.nan


def primary_configuration(run: RunData) -> ConfigurationRun:
    """The selected configuration (find-best's, when a single one), else the best mean Dice."""
    chosen = " + ".join((run.selection or {}).get("configurations") or [])
    if chosen in run.configurations:
        return run.configurations[chosen]

    def score(conf: ConfigurationRun) -> float:
        values = [_mean_dice(c) for c in conf.cases]
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else -1.0

    return max(run.configurations.values(), key=score)


def _summary(doc: Document, run: RunData, primary: ConfigurationRun) -> None:
    fp = run.fingerprint
    sel = run.selection or {}
    chosen = " + ".join(sel.get("configurations", [])) or f"{primary.name} (find-best not run)"
    dice = [_mean_dice(c) for c in primary.cases]
    interval = bootstrap_ci([d for d in dice if not math.isnan(d)])
    epochs = sum(f.epochs for c in run.configurations.values() for f in c.folds.values())
    trained = [c for c in run.configurations.values() if c.folds]
    minutes = sum(f.train_time for c in trained for f in c.folds.values()) / 60
    doc.cards(
        [
            ("chosen model", chosen),
            (f"CV mean Dice of {primary.name}, {interval.n} cases (95% CI)", interval.text()),
            ("training cases", str(fp.get("num_cases", "?"))),
            ("configurations x folds", f"{len(trained)} x {max(len(c.folds) for c in trained)}"),
            ("epochs / training time, all folds", f"{epochs} / {minutes:.1f} min"),
        ]
    )
    doc.cards(
        [
            (f"{name}: CV Dice (95% CI)", bootstrap_ci(list(case_values(primary, name).values())).text())
            for name in primary.classes
        ]
    )


def _fingerprint(doc: Document, run: RunData) -> None:
    fp = run.fingerprint
    doc.heading("Dataset fingerprint")
    labels = ", ".join(f"{v}: {n}" for v, n in run.plans.labels.names.items())
    channels = ", ".join(f"{k}: {v}" for k, v in (fp.get("channel_names") or {}).items())
    doc.paragraph(
        f"{fp.get('num_cases', '?')} training cases ({fp.get('file_ending', '?')}); channels {channels}; "
        f"labels {labels}; median spacing {fp.get('median_spacing')}, median shape after cropping "
        f"{fp.get('median_shape_after_crop')}."
    )
    cases = fp.get("cases") or []
    if cases:
        dims = len(cases[0]["spacing"])
        axes = AXES[-dims:]
        spacing = {f"spacing {a}": [c["spacing"][i] for c in cases] for i, a in enumerate(axes)}
        size = {f"size {a}": [c["shape_after_crop"][i] for c in cases] for i, a in enumerate(axes)}
        doc.images([(histogram_png(spacing, "mm"), "spacing histograms")])
        doc.images([(histogram_png(size, "voxels after cropping"), "size histograms")])
    stats = fp.get("foreground_intensity_properties_per_channel") or {}
    keys = ("percentile_00_5", "median", "percentile_99_5", "mean", "std", "min", "max")
    rows = [[str(ch), *[_fmt(float(s.get(k, math.nan)), 2) for k in keys]] for ch, s in stats.items()]
    doc.paragraph("Foreground intensities per channel (pooled over the labelled voxels):")
    doc.table(["channel", "p0.5", "median", "p99.5", "mean", "std", "min", "max"], rows)


def _plan(doc: Document, run: RunData) -> None:
    plans = run.plans
    doc.heading("Plan")
    rows: list[list[Cell]] = []
    for name in plans.planned:
        c = plans.configuration(name)
        rows.append(
            [
                name,
                str([round(s, 3) for s in c.spacing]),
                str(list(c.patch_size)),
                str(c.batch_size),
                str(c.architecture.n_stages),
                str(list(c.architecture.features_per_stage)),
                ", ".join(c.normalization_schemes),
            ]
        )
    doc.table(["configuration", "spacing", "patch", "batch", "stages", "features", "normalisation"], rows)
    doc.paragraph(f"Why (the reasons of `autoseg plan --explain`, plans {plans.plans_name!r}):")
    doc.code(run.explain)


def _training(doc: Document, run: RunData) -> None:
    doc.heading("Training")
    for conf in run.configurations.values():
        if not conf.folds:
            continue
        doc.heading(f"{conf.name}", level=3)
        rows: list[list[Cell]] = []
        for fold in conf.folds.values():
            last = fold.history[-1] if fold.history else {}
            wait = fold.data_wait / fold.train_time if fold.train_time else math.nan
            rows.append(
                [
                    fold.fold,
                    str(fold.epochs),
                    f"{fold.train_time / 60:.1f} min",
                    f"{fold.data_wait:.0f} s ({wait:.0%})" if not math.isnan(wait) else "-",
                    fold.device,
                    _fmt(last.get("ema_dice")),
                    _fmt(last.get("train_loss")),
                ]
            )
        doc.table(
            ["fold", "epochs", "time", "data wait", "device", "final EMA pseudo-Dice", "train loss"], rows
        )
        doc.images(
            [
                (curves_png(f.history, f"{conf.name} fold {f.fold}"), f"curves fold {f.fold}")
                for f in conf.folds.values()
                if f.history
            ]
        )


def _class_table(doc: Document, conf: ConfigurationRun) -> None:
    rows: list[list[Cell]] = []
    for name in conf.classes:
        row: list[Cell] = [name]
        for metric in METRIC_NAMES:
            interval = bootstrap_ci(list(case_values(conf, name, metric).values()))
            row.append(interval.text(2 if metric == "hd95" else 3))
        row.append(str(bootstrap_ci(list(case_values(conf, name).values())).n))
        rows.append(row)
    doc.table(["class", *[f"{m} (95% CI)" for m in METRIC_NAMES.values()], "cases"], rows)


def _thumbnail(run: RunData, conf: ConfigurationRun, case: dict[str, Any], raw_root: Path | None) -> Cell:
    fold_dir = conf.folds[case["fold"]].folder if case["fold"] in conf.folds else None
    if fold_dir is not None and (fold_dir / "validation" / f"{case['case']}.png").is_file():
        return ("img", file_uri(fold_dir / "validation" / f"{case['case']}.png"))
    ending = str(run.fingerprint.get("file_ending", ".nii.gz"))
    if raw_root is None:
        return "-"
    masks = conf.folder / "crossval" if fold_dir is None else fold_dir / "validation"
    names = {v: n for v, n in run.plans.labels.names.items() if v != 0}
    uri = thumbnail_uri(
        raw_root / "imagesTr" / f"{case['case']}_0000{ending}",
        masks / f"{case['case']}{ending}",
        names,
        case["case"],
    )
    return ("img", uri) if uri else "-"


def _crossval(
    doc: Document, run: RunData, primary: ConfigurationRun, raw_root: Path | None, thumbs: int
) -> None:
    doc.heading("Cross-validation")
    doc.paragraph(
        "Out-of-fold predictions (each trained fold's validation cases), scored at native resolution. Means "
        "over the cases with a percentile-bootstrap 95% confidence interval (2000 resamples of the cases)."
    )
    for conf in run.configurations.values():
        doc.heading(f"{conf.name} ({len(conf.cases)} cases)", level=3)
        if not conf.cases:
            doc.paragraph("no final validation found (run the folds' final validation)", muted=True)
            continue
        _class_table(doc, conf)
        per_class = {n: [v for v in case_values(conf, n).values() if v is not None] for n in conf.classes}
        doc.images([(dice_strip_png(per_class, f"{conf.name}: Dice per case"), f"{conf.name} Dice per case")])
    doc.heading(f"Cases of {primary.name}, worst first", level=3)
    ordered = sorted(primary.cases, key=lambda c: (math.isnan(_mean_dice(c)), _mean_dice(c)))
    rows: list[list[Cell]] = []
    for i, case in enumerate(ordered):
        cells: list[Cell] = [case["case"], case["fold"], _fmt(_mean_dice(case))]
        for name in primary.classes:
            m = case["metrics"].get(name, {})
            cells.append(f"{_fmt(m.get('dice'))} / {_fmt(m.get('hd95'), 1)} / {_fmt(m.get('nsd'))}")
        cells.append(_thumbnail(run, primary, case, raw_root) if i < thumbs else "")
        rows.append(cells)
    header = ["case", "fold", "mean Dice", *[f"{n}: Dice / HD95 / NSD" for n in primary.classes], "overlay"]
    doc.table(header, rows)


def _selection(doc: Document, run: RunData) -> None:
    doc.heading("Model selection (find-best)")
    sel = run.selection
    if not sel:
        doc.paragraph("find-best has not run (autoseg find-best DATASET).", muted=True)
        return
    rows: list[list[Cell]] = []
    for cand in sorted(sel.get("candidates", []), key=lambda c: -c["score"]):
        chosen = "chosen" if cand["configurations"] == sel.get("configurations") else ""
        per_class = ", ".join(f"{k} {_fmt(v)}" for k, v in cand.get("per_class", {}).items())
        rows.append([" + ".join(cand["configurations"]), _fmt(cand["score"], 4), per_class, chosen])
    doc.table(["candidate", "mean foreground Dice", "per class", ""], rows)
    doc.paragraph(f"Post-processing chosen: {sel.get('postprocessing')}")
    decisions = (sel.get("postprocessing_report") or {}).get("decisions", [])
    rows = [
        [
            d["step"] + (f" of {d['class']}" if "class" in d else ""),
            _fmt(d.get("foreground_dice"), 4),
            f"{d.get('gain', 0):+.4f}",
            "kept" if d.get("kept") else "rejected",
        ]
        for d in decisions
    ]
    if rows:
        doc.table(["post-processing step", "foreground Dice", "gain", "verdict"], rows)
    calibration = sel.get("calibration") or {}
    if calibration:
        rows = [
            [k, _fmt(v.get("temperature")), _fmt(v.get("ece_before"), 4), _fmt(v.get("ece_after"), 4)]
            for k, v in calibration.items()
        ]
        doc.table(["configuration", "temperature", "ECE before", "ECE after"], rows)
    doc.code([sel.get("predict_command", "")])


def _environment(doc: Document, run: RunData) -> None:
    env = run.environment
    doc.heading("Environment")
    rows: list[list[Cell]] = [[k, str(v)] for k, v in env.get("versions", {}).items()]
    rows += [
        ["devices (training)", ", ".join(env.get("devices", []))],
        ["autoseg git commit", str(env.get("git_commit"))],
        ["resolved config hash (sha256, 16 hex)", ", ".join(env.get("config_hashes", [])) or "-"],
        ["report written on", env.get("report_host", "")],
    ]
    doc.table(["what", "value"], rows)


def compare_section(
    doc: Document, a: ConfigurationRun, b: ConfigurationRun, label_a: str, label_b: str
) -> None:
    """Per class: mean Dice of both runs over their common cases and the paired Wilcoxon p-value."""
    doc.heading("Comparison")
    rows: list[list[Cell]] = []
    for name in a.classes:
        va, vb = case_values(a, name), case_values(b, name)
        common = sorted(set(va) & set(vb))
        xa, xb = [va[c] for c in common], [vb[c] for c in common]
        p, n = paired_wilcoxon(xa, xb)
        rows.append(
            [name, bootstrap_ci(xa).text(), bootstrap_ci(xb).text(), str(n), "-" if p is None else f"{p:.4f}"]
        )
    doc.paragraph(f"A = {label_a}, B = {label_b}; paired by case, two-sided Wilcoxon signed-rank test.")
    doc.table(["class", "Dice A (95% CI)", "Dice B (95% CI)", "paired cases", "Wilcoxon p"], rows)


def render_report(
    run: RunData,
    raw_root: Path | None = None,
    compare: tuple[ConfigurationRun, str] | None = None,
    thumbnails: int = 12,
) -> Document:
    """The report of ``run``; ``compare``: another run's configuration and its label."""
    primary = primary_configuration(run)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = Document(f"autoseg report: {run.dataset}")
    doc.paragraph(f"Results {run.model_root}, plans {run.plans.plans_name!r}; written {stamp}.", muted=True)
    _summary(doc, run, primary)
    if compare is not None:
        compare_section(doc, primary, compare[0], f"{run.model_root} ({primary.name})", compare[1])
    _crossval(doc, run, primary, raw_root, thumbnails)
    _selection(doc, run)
    leaderboard_section(doc, run.model_root.name, find_leaderboards(run.model_root))
    _training(doc, run)
    _fingerprint(doc, run)
    _plan(doc, run)
    _environment(doc, run)
    return doc


def other_run(model_root: Path, plans_name: str | None, configuration: str | None) -> ConfigurationRun:
    """A configuration of another results folder, for ``--compare`` (its selection's, or the only one)."""
    import json

    from autoseg.report.collect import configuration_run

    selection_file = model_root / "selection.json"
    selection = json.loads(selection_file.read_text()) if selection_file.is_file() else {}
    plans_dirs: Sequence[Path] = (
        [model_root / plans_name] if plans_name else sorted(p for p in model_root.glob("*") if p.is_dir())
    )
    found = {
        c.name: c
        for d in plans_dirs
        for c in (configuration_run(p) for p in sorted(d.glob("*")) if p.is_dir() and list(p.glob("fold_*")))
        if c.cases
    }
    wanted = configuration or (selection.get("configurations") or [None])[0]
    if wanted in found:
        return found[wanted]
    if len(found) == 1:
        return next(iter(found.values()))
    raise FileNotFoundError(
        f"{model_root}: no single configuration to compare with (found: {', '.join(found) or 'none'}); "
        "run find-best there or name one with --compare-configuration"
    )
