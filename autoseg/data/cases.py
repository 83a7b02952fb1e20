"""The preprocessed cases of one configuration, opened lazily and memory-mapped.

A training patch reads only its own bytes: :func:`autoseg.preprocessing.storage.load_case`
memory-maps the ``.npy`` arrays, and :class:`PreprocessedCases` keeps the maps (and the
decoded foreground locations) of every case it has opened, per process. The cache is not
pickled, so a worker started with ``spawn`` opens its own maps; forked workers share the
parent's read-only maps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.contracts.case import CaseProperties
from autoseg.preprocessing.storage import case_files, load_case, read_properties

__all__ = ["PreprocessedCases"]

Case = tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]


class PreprocessedCases:
    """The preprocessed cases of one configuration folder.

    Args:
        folder: the configuration's preprocessed folder (``<preprocessed>/<plans>/<config>``),
            as written by :func:`autoseg.preprocessing.storage.save_case`.
        names: the case identifiers to use (e.g. a fold's training cases).

    Raises:
        ValueError: no names, duplicated names, or cases whose properties JSON is missing
            (all of them are listed).

    Example:
        >>> cases = PreprocessedCases(folder, ["case_000", "case_001"])  # doctest: +SKIP
        >>> data, seg, locations = cases.load("case_000")  # doctest: +SKIP
        >>> data.shape, seg.shape, locations[1].shape  # doctest: +SKIP
        ((1, 36, 50, 35), (1, 36, 50, 35), (812, 3))
    """

    def __init__(self, folder: str | os.PathLike[str], names: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.names: list[str] = [str(n) for n in names]
        problems = []
        if not self.names:
            problems.append("no case names given")
        duplicated = sorted({n for n in self.names if self.names.count(n) > 1})
        if duplicated:
            problems.append(f"duplicated case names {duplicated}")
        missing = [n for n in self.names if not case_files(self.folder, n)["properties"].is_file()]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            problems.append(
                f"{len(missing)} case(s) not preprocessed in {self.folder}: {shown} "
                "(run `autoseg plan` / preprocessing for this configuration first)"
            )
        if problems:
            raise ValueError("PreprocessedCases: " + "; ".join(problems))
        self._cache: dict[str, Case] = {}
        self._num_channels: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"PreprocessedCases({str(self.folder)!r}, {len(self.names)} cases)"

    def load(self, name: str) -> Case:
        """One case, memory-mapped (opened on first use, then cached in this process).

        Args:
            name: a case identifier.

        Returns:
            ``(data, seg, locations)``: data (C, Z, Y, X) float32 (read-only memmap), seg
            (1, Z, Y, X) int8/int16 with -1 outside the non-zero region, and
            label -> (N, 3) int voxel coordinates (z, y, x) of that label.
        """
        case = self._cache.get(name)
        if case is None:
            data, seg, _, locations = load_case(self.folder, name, mmap=True)
            if data.ndim != 4 or seg.shape != (1, *data.shape[1:]):
                raise ValueError(
                    f"case {name!r} in {self.folder}: expected data (C, Z, Y, X) and seg (1, Z, Y, X), "
                    f"got data {data.shape} and seg {seg.shape}"
                )
            case = (data, seg, locations)
            self._cache[name] = case
        return case

    def properties(self, name: str) -> CaseProperties:
        """The case's properties (geometry, crop box, ``storage`` record)."""
        return read_properties(self.folder, name)

    @property
    def num_channels(self) -> int:
        """The number of image channels C (read from the first case's storage record)."""
        if self._num_channels is None:
            self._num_channels = int((self.properties(self.names[0]).storage or {})["data_shape"][0])
        return self._num_channels

    def __getstate__(self) -> dict[str, Any]:
        # memmaps would be pickled as full array copies: a new process opens its own
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state
