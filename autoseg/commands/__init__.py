"""Every subcommand of ``autoseg``, one module each (:mod:`autoseg.commands.dispatch` runs them).

Each module has ``register(sub)``, which adds its subparser(s) to the ``autoseg`` parser and sets
``func`` to a function ``(args) -> int`` (the exit code). Modules import heavy libraries inside
those functions, so that ``autoseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

COMMAND_MODULES = (
    "autoseg.commands.planning",
    "autoseg.commands.train",
    "autoseg.commands.predict",
    "autoseg.commands.model",
    "autoseg.commands.evaluate",
    "autoseg.commands.convert",
    "autoseg.commands.overlay",
    "autoseg.commands.report",
    "autoseg.commands.demo",
    "autoseg.commands.sweep",
)


def register_all(sub: argparse._SubParsersAction) -> None:
    """Add every module's subcommands to ``sub``."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
