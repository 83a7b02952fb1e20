"""A preprocessed case's properties and the plan's resampling, as typed contracts.

Preprocessing writes :class:`CaseProperties` beside each case (``<case>.json``) and hands them to
prediction; everything that maps an array back to the case's own grid (reverting, the cascade's
previous stage, the device resampler) reads them through this class, never by key.

Example:
    >>> Resampling().probabilities_orders  # the data's order along the coarse axis when unset
    (1, 0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from autoseg.contracts.reading import ContractError, FieldReader, as_floats, as_int_rows, as_ints
from autoseg.utils.lookup import closest

__all__ = ["DEFAULT_RESAMPLING", "CaseProperties", "Resampling"]


@dataclass(frozen=True)
class Resampling:
    """Interpolation orders (in-plane and along the coarse axis) and the anisotropy threshold.

    The defaults are nnU-Net's: order 3 for images, 1 for labels (one-hot) and probabilities, 0 along
    the coarse axis of data whose spacing ratio exceeds ``separate_z_anisotropy_threshold``.
    ``probabilities_order_z`` None means ``data_order_z``.
    """

    data_order: int = 3
    data_order_z: int = 0
    seg_order: int = 1
    seg_order_z: int = 0
    probabilities_order: int = 1
    separate_z_anisotropy_threshold: float = 3.0
    probabilities_order_z: int | None = None

    @property
    def probabilities_orders(self) -> tuple[int, int]:
        """The orders of probabilities (in-plane, along the coarse axis)."""
        given = self.probabilities_order_z
        return self.probabilities_order, self.data_order_z if given is None else given

    @classmethod
    def read(cls, data: Mapping[str, Any], where: str, problems: list[str]) -> Resampling:
        """Missing keys take the defaults; unknown keys and wrong types are problems."""
        r = FieldReader(data, where, problems)
        default = cls()
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                near = closest(key, known)
                problems.append(
                    f"{where}: unknown key {key!r}" + (f" (did you mean {near!r}?)" if near else "")
                )
        orders = {k: r.get(k, int, getattr(default, k)) for k in known[:5]}
        return cls(
            **orders,
            separate_z_anisotropy_threshold=r.get(
                "separate_z_anisotropy_threshold", (int, float), 3.0, float
            ),
            probabilities_order_z=r.get("probabilities_order_z", int, None),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "resampling") -> Resampling:
        problems: list[str] = []
        res = cls.read(data, where, problems)
        if problems:
            raise ContractError(f"{where} is inconsistent:\n  " + "\n  ".join(problems), problems)
        return res

    def to_dict(self) -> dict[str, float | int]:
        """As plans.json and the case properties write it."""
        out: dict[str, float | int] = {
            "data_order": self.data_order,
            "data_order_z": self.data_order_z,
            "seg_order": self.seg_order,
            "seg_order_z": self.seg_order_z,
            "probabilities_order": self.probabilities_order,
            "separate_z_anisotropy_threshold": self.separate_z_anisotropy_threshold,
        }
        if self.probabilities_order_z is not None:
            out["probabilities_order_z"] = self.probabilities_order_z
        return out


#: nnU-Net's resampling, as plans.json writes it.
DEFAULT_RESAMPLING: dict[str, float | int] = Resampling().to_dict()


@dataclass(frozen=True)
class CaseProperties:
    """What preprocessing did to one case, so its arrays can be mapped back to the case's grid.

    Attributes:
        geometry: the case's own geometry (``autoseg.io.images.Geometry.to_json``).
        transpose_forward / transpose_backward: the axis order of the preprocessed arrays.
        shape_before_cropping: the transposed image shape.
        bbox_used_for_cropping: ``((start, stop), ...)`` per transposed axis.
        spacing: the transposed spacing of the case; ``target_spacing``: the plan's for it.
        resampling: the plan's orders.
        storage: how the arrays were stored (written by the storage, read by it only).
    """

    case: str
    configuration: str
    geometry: Mapping[str, Any]
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    shape_before_cropping: tuple[int, ...]
    bbox_used_for_cropping: tuple[tuple[int, ...], ...]
    shape_after_cropping_and_before_resampling: tuple[int, ...]
    shape_after_resampling: tuple[int, ...]
    spacing: tuple[float, ...]
    target_spacing: tuple[float, ...]
    resampling: Resampling = field(default_factory=Resampling)
    storage: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "case properties") -> CaseProperties:
        """Read ``<case>.json`` (or what :func:`preprocess_case` returned); every problem listed."""
        problems: list[str] = []
        r = FieldReader(data, where, problems)
        props = dict(
            case=r.get("case", str, ""),
            configuration=r.get("configuration", str, ""),
            geometry=r.get("geometry", dict),
            transpose_forward=r.get("transpose_forward", list, convert=as_ints),
            transpose_backward=r.get("transpose_backward", list, convert=as_ints),
            shape_before_cropping=r.get("shape_before_cropping", list, convert=as_ints),
            bbox_used_for_cropping=r.get("bbox_used_for_cropping", list, convert=as_int_rows),
            shape_after_cropping_and_before_resampling=r.get(
                "shape_after_cropping_and_before_resampling", list, convert=as_ints
            ),
            shape_after_resampling=r.get("shape_after_resampling", list, convert=as_ints),
            spacing=r.get("spacing", list, convert=as_floats),
            target_spacing=r.get("target_spacing", list, convert=as_floats),
            resampling=Resampling.read(r.get("resampling", dict, {}), f"{where}.resampling", problems),
            storage=r.get("storage", dict, None),
        )
        if problems:
            raise ContractError(f"{where} is inconsistent:\n  " + "\n  ".join(problems), problems)
        return cls(**props)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """As ``<case>.json`` stores it (without ``storage``, which the storage adds)."""
        return {
            "case": self.case,
            "configuration": self.configuration,
            "geometry": dict(self.geometry),
            "transpose_forward": list(self.transpose_forward),
            "transpose_backward": list(self.transpose_backward),
            "shape_before_cropping": list(self.shape_before_cropping),
            "bbox_used_for_cropping": [list(b) for b in self.bbox_used_for_cropping],
            "shape_after_cropping_and_before_resampling": list(
                self.shape_after_cropping_and_before_resampling
            ),
            "shape_after_resampling": list(self.shape_after_resampling),
            "spacing": list(self.spacing),
            "target_spacing": list(self.target_spacing),
            "resampling": self.resampling.to_dict(),
        }

    @property
    def num_spatial(self) -> int:
        """Spatial axes of the preprocessed arrays."""
        return len(self.spacing)

    def at_native_spacing(self) -> CaseProperties:
        """These properties for an array already resampled to the case's own spacing."""
        return replace(self, target_spacing=self.spacing)
