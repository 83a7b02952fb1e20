"""The network a configuration trains, as a typed and checked contract (``architecture`` in plans.json).

Every check of an architecture lives here, so a bad plan fails when it is read
(:meth:`autoseg.contracts.Plans.load`) or built (:meth:`Architecture.__post_init__`), with every
problem listed; the network builders (:mod:`autoseg.nets`) take an :class:`Architecture` and trust it.

Example:
    >>> arch = Architecture("plain", 3, (4, 8, 16), ((3, 3),) * 3, ((1, 1), (2, 2), (2, 2)))
    >>> arch.spatial_dims, arch.to_dict()["strides"]
    (2, [[1, 1], [2, 2], [2, 2]])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoseg.contracts.reading import FieldReader, PlansError, as_int_rows, as_ints
from autoseg.utils.lookup import unknown_name

__all__ = ["NONLINEARITY_NAMES", "NORM_NAMES", "Architecture"]

#: Normalisation layers a plan may name (the builders map them to MONAI's).
NORM_NAMES = ("instance", "batch")
#: Nonlinearities a plan may name.
NONLINEARITY_NAMES = ("leakyrelu", "relu")
#: Convolutions per stage of the plain U-Net (MONAI DynUNet has exactly two).
PLAIN_BLOCKS = 2


@dataclass(frozen=True)
class Architecture:
    """The network a configuration trains (``architecture`` in plans.json and in checkpoints).

    Constructing one checks it (:meth:`problems`); a PlansError lists every problem.
    """

    network: str
    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    blocks_per_stage_encoder: tuple[int, ...] = (PLAIN_BLOCKS,)
    blocks_per_stage_decoder: tuple[int, ...] = (PLAIN_BLOCKS,)
    norm: str = "instance"
    nonlinearity: str = "leakyrelu"
    deep_supervision: bool = True

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise PlansError("architecture is inconsistent:\n  " + "\n  ".join(problems), problems)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "architecture") -> Architecture:
        """Read the dict form (plans.json, a checkpoint); PlansError lists every problem."""
        problems: list[str] = []
        arch = cls.read(data, where, problems)
        if arch is None:
            raise PlansError(f"{where} is inconsistent:\n  " + "\n  ".join(problems))
        return arch

    @classmethod
    def read(cls, data: Mapping[str, Any], where: str, problems: list[str]) -> Architecture | None:
        """The architecture of ``data``, or None with every problem appended to ``problems``."""
        r = FieldReader(data, where, problems)
        before = len(problems)
        kernels = r.get("kernel_sizes", list, convert=as_int_rows)
        fields = dict(
            network=r.get("network", str, "plain"),
            n_stages=r.get("n_stages", int, len(kernels) if kernels else 0),
            features_per_stage=r.get("features_per_stage", list, convert=as_ints),
            kernel_sizes=kernels,
            strides=r.get("strides", list, convert=as_int_rows),
            blocks_per_stage_encoder=r.get("blocks_per_stage_encoder", list, (PLAIN_BLOCKS,), as_ints),
            blocks_per_stage_decoder=r.get("blocks_per_stage_decoder", list, (PLAIN_BLOCKS,), as_ints),
            norm=r.get("norm", str, "instance"),
            nonlinearity=r.get("nonlinearity", str, "leakyrelu"),
            deep_supervision=r.get("deep_supervision", bool, True),
        )
        if len(problems) > before:
            return None
        try:
            return cls(**fields)  # type: ignore[arg-type]
        except PlansError as err:
            problems.extend(f"{where}: {p}" for p in err.problems)
            return None

    def problems(self) -> list[str]:
        """Every inconsistency: lengths against ``n_stages``, dimensionality, sizes, names, blocks."""
        n = self.n_stages
        problems = [
            f"{key} has {len(getattr(self, key))} entries, n_stages is {n}"
            for key in ("features_per_stage", "kernel_sizes", "strides")
            if len(getattr(self, key)) != n
        ]
        dims = {len(k) for k in self.kernel_sizes} | {len(s) for s in self.strides}
        if len(dims) != 1 or not dims <= {2, 3}:
            problems.append(f"kernel_sizes/strides mix or use unsupported dimensionalities {sorted(dims)}")
        sizes = [*self.features_per_stage, *(v for row in (*self.kernel_sizes, *self.strides) for v in row)]
        if any(v < 1 for v in sizes):
            problems.append("features_per_stage, kernel_sizes and strides need values >= 1")
        if self.norm not in NORM_NAMES:
            problems.append(unknown_name("norm", self.norm, NORM_NAMES))
        if self.nonlinearity not in NONLINEARITY_NAMES:
            problems.append(unknown_name("nonlinearity", self.nonlinearity, NONLINEARITY_NAMES))
        return problems + self._block_problems()

    def _block_problems(self) -> list[str]:
        enc, dec, n = list(self.blocks_per_stage_encoder), list(self.blocks_per_stage_decoder), self.n_stages
        if self.network == "plain":
            return [
                f"(plain) {key}={blocks}, but the plain U-Net (MONAI DynUNet) has {PLAIN_BLOCKS} convs "
                f"per stage; plan with blocks {PLAIN_BLOCKS} or use network 'resenc'"
                for key, blocks in (("blocks_per_stage_encoder", enc), ("blocks_per_stage_decoder", dec))
                if any(b != PLAIN_BLOCKS for b in blocks)
            ]
        if self.network != "resenc":
            return []  # another registered network checks its own blocks
        problems = []
        if len(enc) != n or min(enc, default=0) < 1:
            problems.append(f"blocks_per_stage_encoder={enc} needs {n} entries >= 1 (one per stage)")
        if len(dec) != n - 1 or min(dec, default=0) < 1:
            problems.append(
                f"blocks_per_stage_decoder={dec} needs {n - 1} entries >= 1 (one per decoder stage)"
            )
        return problems

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return len(self.kernel_sizes[0])

    def to_dict(self) -> dict[str, Any]:
        """As plans.json and checkpoints write it."""
        return {
            "network": self.network,
            "n_stages": self.n_stages,
            "features_per_stage": list(self.features_per_stage),
            "kernel_sizes": [list(k) for k in self.kernel_sizes],
            "strides": [list(s) for s in self.strides],
            "blocks_per_stage_encoder": list(self.blocks_per_stage_encoder),
            "blocks_per_stage_decoder": list(self.blocks_per_stage_decoder),
            "norm": self.norm,
            "nonlinearity": self.nonlinearity,
            "deep_supervision": self.deep_supervision,
        }
