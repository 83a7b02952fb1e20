"""Parse the ``autoseg`` command line and run one subcommand, turning known errors into exit code 1.

Positional ``key=value`` arguments are hydra overrides (``paths.raw=/data``,
``planner.max_dataset_covered=0.1``); ``CONFIG.FIELD=VALUE`` arguments (``3d_fullres.batch_size=4``)
override a plan field and are recorded in plans.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

PLAN_OVERRIDE_PREFIXES = ("2d.", "3d_fullres.", "3d_lowres.")
log = logging.getLogger("autoseg")


def _split_overrides(items: Sequence[str]) -> tuple[list[str], list[str]]:
    hydra: list[str] = []
    plan: list[str] = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"autoseg: error: unexpected argument {item!r} (overrides are key=value)")
        (plan if item.startswith(PLAN_OVERRIDE_PREFIXES) else hydra).append(item)
    return hydra, plan


def build_parser() -> argparse.ArgumentParser:
    """The ``autoseg`` parser: every subcommand is registered by its module in :mod:`autoseg.commands`."""
    from autoseg.commands import register_all

    parser = argparse.ArgumentParser(
        prog="autoseg", description="Self-configuring medical image segmentation."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    register_all(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the subcommand, return its exit code."""
    parser = build_parser()
    # key=value overrides may stand anywhere, also after options: argparse leaves those to us
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or "=" not in e]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra and not hasattr(args, "overrides"):
        parser.error(f"{args.command} takes no key=value overrides: {' '.join(extra)}")
    args.overrides = [*(getattr(args, "overrides", None) or []), *extra]
    configs = getattr(args, "configurations", None)
    if isinstance(configs, list) and hasattr(args, "overrides"):  # `-c 3d_fullres key=value`: nargs took both
        args.overrides += [c for c in configs if "=" in c]
        args.configurations = [c for c in configs if "=" not in c] or None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    if not args.verbose:
        logging.getLogger("highdicom").setLevel(logging.WARNING)  # it narrates every copied DICOM module
    hydra, plan = _split_overrides(getattr(args, "overrides", []) or [])
    args.hydra_overrides, args.plan_overrides = hydra, plan
    try:
        return int(args.func(args))
    except Exception as err:
        message = user_message(args.command, err)
        if message is not None:
            from autoseg.io.problems import shown_paths

            message = shown_paths(message)
        if message is None:
            raise  # a bug, not a bad input: the traceback is the report
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(message, file=sys.stderr)
        return 1


def user_message(command: str, err: BaseException) -> str | None:
    """The message for an error a user can fix (bad input, missing package, disk), or None for a bug.

    Example:
        >>> user_message("evaluate", FileNotFoundError("pred: not a folder"))
        'autoseg evaluate: error: pred: not a folder'
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from autoseg.io.dataset import DatasetNotFoundError
    from autoseg.io.problems import InputError
    from autoseg.io.validation import DatasetValidationError
    from autoseg.training.lock import FoldLockedError
    from autoseg.utils.files import ArtifactError, WriteError

    if isinstance(err, InputError):
        n = sum(p.severity == "error" for p in err.problems)
        listed = "\n".join(f"  {p}" for p in err.problems)
        return f"autoseg {command}: {n} problem(s) with what it would read; nothing was done.\n{listed}"
    if isinstance(err, DatasetValidationError):
        return f"autoseg {command}: the dataset has problems; nothing was written.\n{err}"
    if isinstance(err, ImportError):  # an optional package: the message says which extra installs it
        return f"autoseg {command}: error: {err}"
    if isinstance(err, OSError) and not isinstance(err, WriteError) and err.filename is not None:
        return f"autoseg {command}: error: {err.filename}: {err.strerror or err}"
    known = (
        DatasetNotFoundError,
        ArtifactError,
        WriteError,
        FoldLockedError,
        ValueError,
        OSError,
        HydraException,
        OmegaConfBaseException,
    )
    if isinstance(err, known):
        return f"autoseg {command}: error: {err}"
    return None
