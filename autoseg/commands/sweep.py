"""``autoseg sweep SWEEP.yaml``: datasets x configurations x folds x presets x seeds in one file.

Plans and preprocesses each dataset once per planner preset, trains every fold through the launcher
(``launcher: {name: local}`` or ``{name: slurm, ...}`` in the file, ``--launcher`` and
``launcher.KEY=VALUE`` on the command line win), runs find-best per dataset, and writes
``<results>/sweeps/<name>/leaderboard.{md,csv,json}`` (per-class cross-validation Dice with 95 %
bootstrap intervals over cases, and a paired Wilcoxon test of each row against the baseline row)
and ``manifest.json``. Run it again to finish what is missing: finished work is skipped and only
missing or failed trainings are submitted. The file's keys are described in :mod:`autoseg.sweep.spec`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from autoseg.commands.common import compose_config, launcher_settings


def _launcher(args: argparse.Namespace, spec: Any) -> Any:
    """The :class:`autoseg.sweep.run.SweepLauncher` of the file's ``launcher`` and the command line."""
    from autoseg.sweep.run import SweepLauncher, local_slots
    from autoseg.sweep.slurm import SlurmConfig

    name = args.launcher or spec.launcher.get("name", "local")
    from_file = [f"launcher.{k}={json.dumps(v)}" for k, v in spec.launcher.items() if k != "name"]
    if name != spec.launcher.get("name", "local"):
        from_file = []  # the file's settings are for its own launcher
    cfg = compose_config(args, [f"launcher={name}", *from_file])
    settings = launcher_settings(cfg)
    if name == "slurm":
        return cfg, SweepLauncher(
            name, slurm=SlurmConfig.from_mapping(settings), settings={"name": name, **settings}
        )
    slots = local_slots(int(settings.get("parallel") or 1), str(settings.get("device") or "auto"))
    return cfg, SweepLauncher(name, slots=slots, settings={"name": name, **settings})


def cmd_sweep(args: argparse.Namespace) -> int:
    from autoseg.commands.config import Paths
    from autoseg.io.dataset import resolve_dataset
    from autoseg.sweep.run import Roots, run_sweep
    from autoseg.sweep.spec import read_sweep

    spec = read_sweep(Path(args.sweep))
    cfg, launcher = _launcher(args, spec)
    if "mlflow_experiment" in cfg.trainer:  # MLflow groups the sweep's runs (the file's overrides win)
        spec = dataclasses.replace(
            spec, overrides=(f"trainer.mlflow_experiment=sweep-{spec.name}", *spec.overrides)
        )
    paths = Paths.from_config(cfg)
    datasets = [resolve_dataset(d, paths.raw) for d in spec.datasets]
    roots = Roots(paths.raw, paths.require("preprocessed"), paths.require("results"))
    print(
        f"sweep {spec.name}: {len(datasets)} dataset(s) x {len(spec.rows)} row(s) "
        f"x {len(spec.folds)} fold(s) "
        f"on launcher {launcher.name}"
    )
    return run_sweep(spec, roots, launcher, datasets)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the ``autoseg`` parser."""
    p = sub.add_parser(
        "sweep",
        help="datasets x configurations x folds x presets x seeds from one YAML file, ranked in a table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", help="the sweep file (YAML)")
    p.add_argument(
        "--launcher", choices=["local", "slurm"], default=None, help="default: the file's launcher"
    )
    p.add_argument("overrides", nargs="*", help="hydra overrides: paths.results=..., launcher.partition=gpu")
    p.set_defaults(func=cmd_sweep)
