"""The ``autoseg`` command. Every subcommand lives in :mod:`autoseg.commands`; this only dispatches."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autoseg`` command; returns the exit code."""
    from autoseg.commands.dispatch import run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
