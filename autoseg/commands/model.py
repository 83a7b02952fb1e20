"""Placeholder: filled in by the work on this subcommand."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds no subcommand yet."""
