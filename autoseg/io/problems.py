"""What dataset validation finds: :class:`Problem`, the error that carries them, and a report.

Every check in :mod:`autoseg.io.validation` returns a list of problems rather than raising at
the first one, so a user sees everything that is wrong with a dataset in one run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        severity: ``"error"`` stops the pipeline; ``"warning"`` is reported and tolerated.
        path: the file or folder concerned, relative to the dataset folder where possible
            (``"labelsTr/case_003.nii.gz"``, ``"dataset.json"``, ``"."`` for the folder itself).
        message: what is wrong, the offending value, and how to fix it.

    Example:
        >>> str(Problem("error", "dataset.json", "missing"))
        'error: dataset.json: missing'
    """

    severity: Severity
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


def error(path: str | os.PathLike[str], message: str) -> Problem:
    return Problem("error", str(path), message)


def warning(path: str | os.PathLike[str], message: str) -> Problem:
    return Problem("warning", str(path), message)


def relative(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """``path`` relative to ``root`` when it lies under it (lexically), else ``path`` unchanged.

    Example:
        >>> relative("/data/Dataset001_X/labelsTr/a.nii.gz", "/data/Dataset001_X")
        'labelsTr/a.nii.gz'
    """
    try:
        return Path(path).relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


#: The start of the warning for a label map without foreground (:func:`no_foreground_anywhere` counts them).
NO_FOREGROUND = "no foreground: every voxel of the label map is background (0)"


def no_foreground_anywhere(problems: Iterable[Problem], num_labelled: int) -> list[Problem]:
    """An error when every one of the ``num_labelled`` label maps has the :data:`NO_FOREGROUND` warning.

    Example:
        >>> no_foreground_anywhere([warning("labelsTr/a.nii.gz", NO_FOREGROUND)], 1)[0].severity
        'error'
    """
    empty = sum(p.severity == "warning" and p.message.startswith(NO_FOREGROUND) for p in problems)
    if num_labelled == 0 or empty < num_labelled:
        return []
    msg = (
        f"no foreground in any of the {num_labelled} label maps: there is nothing to learn; "
        "check that labelsTr holds the segmentations (not empty masks) and that dataset.json's labels match"
    )
    return [error("labelsTr", msg)]


class DatasetValidationError(ValueError):
    """A dataset has errors. ``problems`` holds all of them (warnings too); ``str()`` lists the errors.

    Attributes:
        problems: every problem found, errors first.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems if p.severity == "error"))


class InputError(ValueError):
    """What a command after ``plan`` would read has errors. ``problems`` holds all of them (warnings
    too); ``str()`` lists the errors, one a line. Raised before any work, so nothing was written.

    Attributes:
        problems: every problem found, errors first.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sort_problems(problems)
        super().__init__("\n".join(str(p) for p in self.problems if p.severity == "error"))


def raise_for_input_problems(problems: list[Problem]) -> list[Problem]:
    """Raise :class:`InputError` if any problem is an error; else return the warnings.

    Example:
        >>> raise_for_input_problems([warning("a", "b")])
        [Problem(severity='warning', path='a', message='b')]
    """
    if any(p.severity == "error" for p in problems):
        raise InputError(list(problems))
    return sort_problems(problems)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Drop duplicates and put errors first, keeping the order of discovery otherwise."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: p.severity != "error")


def raise_for_problems(problems: list[Problem]) -> None:
    """Raise :class:`DatasetValidationError` if any problem is an error; warnings alone pass.

    Raises:
        DatasetValidationError: carrying every problem (errors first).
    """
    if any(p.severity == "error" for p in problems):
        raise DatasetValidationError(sort_problems(problems))


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_problems(problems: list[Problem]) -> str:
    """A readable report: ``"N errors, M warnings"``, then one problem per line, errors first.

    Example:
        >>> print(format_problems([Problem("warning", "dataset.json", "numTraining is 3, found 2 cases")]))
        0 errors, 1 warning
          warning: dataset.json: numTraining is 3, found 2 cases
    """
    problems = sort_problems(problems)
    n_errors = sum(p.severity == "error" for p in problems)
    lines = [f"{_count(n_errors, 'error')}, {_count(len(problems) - n_errors, 'warning')}"]
    lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


#: Internal copies (an unpacked model archive, find-best's merged cross-validation) -> the user's file.
_ALIASES: dict[str, str] = {}


def alias_path(internal: str | os.PathLike[str], shown: str | os.PathLike[str]) -> None:
    """Show ``shown`` wherever a message would name ``internal`` (an internal copy of the user's file).

    Example:
        >>> alias_path("/tmp/unpacked-1", "model.zip:")
        >>> shown_paths("/tmp/unpacked-1/default/plans.json: broken")
        'model.zip:/default/plans.json: broken'
    """
    _ALIASES[str(internal)] = str(shown)


def shown_paths(text: str) -> str:
    """``text`` with every internal copy's path replaced by the user's file (:func:`alias_path`)."""
    for internal in sorted(_ALIASES, key=len, reverse=True):
        text = text.replace(internal, _ALIASES[internal])
    return text
