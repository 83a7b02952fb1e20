"""Extra training transforms from YAML: any TorchIO transform, run on the output patch.

autoseg's own transforms (:mod:`autoseg.data.augment`) are nnU-Net's set, measured faster than
TorchIO's for it. What they lack, MR artefacts and elastic deformation, comes from TorchIO: a
list under ``augment.extra`` in the config, each entry a ``_target_`` and its arguments::

    augment:
      extra:
        - _target_: torchio.RandomBiasField
          coefficients: 0.5
          p: 0.3

They run in the data workers after autoseg's transforms, on the patch only: the image as a
``ScalarImage`` and the label map as a ``LabelMap`` (so spatial transforms move both alike and
labels stay integral). TorchIO draws from torch's global generator; each sample's transforms run
with it seeded from that sample's own seed (drawn from the batch's generator), so batch ``k`` is
still built from ``(seed, k)`` alone.

Example:
    >>> extra = ExtraTransforms([{"_target_": "torchio.RandomGhosting", "p": 1.0}])
    >>> image, seg = torch.rand(1, 16, 16, 16), torch.zeros(1, 16, 16, 16, dtype=torch.int64)
    >>> out_image, out_seg = extra(image, seg, seed=7)
    >>> out_image.shape, bool((out_seg == seg).all())
    (torch.Size([1, 16, 16, 16]), True)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from autoseg.utils.lookup import closest

__all__ = ["ExtraTransforms", "instantiate"]


def _torchio_names() -> list[str]:
    import torchio

    return [f"torchio.{n}" for n in dir(torchio) if n[:1].isupper()]


def instantiate(spec: Mapping[str, Any], where: str = "augment.extra") -> Any:
    """Build ``_target_(**arguments)`` from a YAML mapping.

    Raises:
        ValueError: no ``_target_``, an unknown target (with the nearest TorchIO name), or
            arguments the target does not take (TorchIO's own message).
    """
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ValueError(f"{where}: {spec!r} needs a '_target_' such as torchio.RandomBiasField")
    target = str(spec["_target_"])
    module_name, _, name = target.rpartition(".")
    obj = None
    try:
        obj = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ImportError:
        obj = None
    if obj is None or not callable(obj):
        near = closest(target, _torchio_names())
        hint = f" (did you mean {near!r}?)" if near else ""
        raise ValueError(f"{where}: unknown transform {target!r}{hint}")
    arguments = {str(k): _plain(v) for k, v in spec.items() if k != "_target_"}
    try:
        return obj(**arguments)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {target}({arguments}) failed: {err}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


class ExtraTransforms:
    """TorchIO transforms from their YAML specs, applied to one sample with its own seed.

    Args:
        specs: mappings with ``_target_`` (e.g. ``torchio.RandomMotion``) and the arguments.
    """

    def __init__(self, specs: Sequence[Mapping[str, Any]]) -> None:
        import torchio

        problems, transforms = [], []
        for i, spec in enumerate(specs):
            try:
                transforms.append(instantiate(spec, f"augment.extra[{i}]"))
            except ValueError as err:
                problems.append(str(err))
        if problems:
            raise ValueError("\n".join(problems))
        self.specs = [dict(s) for s in specs]
        self.compose = torchio.Compose(transforms)

    def __len__(self) -> int:
        return len(self.specs)

    def __repr__(self) -> str:
        return f"ExtraTransforms({[s['_target_'] for s in self.specs]})"

    def __call__(
        self, image: torch.Tensor, seg: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform one sample: ``image`` (C, *patch) float32, ``seg`` (1, *patch) integer labels.

        Returns tensors of the same shapes and dtypes. A 2D patch is given TorchIO as one slice.
        """
        import torchio

        two_d = image.ndim == 3
        img = image[..., None] if two_d else image
        lab = seg[..., None] if two_d else seg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            subject = torchio.Subject(
                image=torchio.ScalarImage(tensor=img.float()),
                label=torchio.LabelMap(tensor=lab.to(torch.int64)),
            )
            out: Any = self.compose(subject)
        out_image = out["image"].data.to(image.dtype)
        out_seg = out["label"].data.to(seg.dtype)
        if two_d:
            out_image, out_seg = out_image[..., 0], out_seg[..., 0]
        return out_image.contiguous(), out_seg.contiguous()
