"""Run a fold's network with torch, a torch.export program, onnxruntime or OpenVINO; export it once, checked.

``autoseg export-model --onnx`` / ``--torch-export`` (and ``autoseg predict --backend`` on first use)
export each fold's network next to its checkpoint::

    fold_0/checkpoint_final.pt
    fold_0/checkpoint_final.onnx        (onnxruntime and OpenVINO read this)
    fold_0/checkpoint_final.pt2         (``torch.export.export`` with a dynamic batch axis, saved by
                                        ``torch.export.save``; the ``torch-export`` backend runs it)
    fold_0/checkpoint_final.onnx.json   the export record: sha256 of the checkpoint and of the
                                        export, the equivalence check, the versions

TorchScript (``torch.jit``) is deprecated by torch (2.13 warns on every use): ``--backend torchscript``
and ``--torchscript`` now stop with a message naming ``torch-export``. A ``.pt2`` is loaded with
``torch.export.load``, which unpickles; it is loaded only after its sha256 matches the record written
when it was made and checked (the record lives in the model folder, beside the checkpoint).

An export is reused while the checkpoint's sha256 still matches its record; otherwise it is made
again. Every export is checked before it is kept: the maximum absolute difference of the logits
against torch on a random input (at most :data:`MAX_ABS_DIFF`), and the Dice of the argmax on a
sample (a real preprocessed case when one is given, else a smooth synthetic one), which must be
at least :data:`MIN_DICE` (the record keeps the exact value).

The ONNX file comes from torch's TorchScript-based exporter (``dynamo=False``): 0.6 s for a small
3D U-Net here against 17 s for the ``torch.export``-based one, whose graph is no different for
these convolutions; the check above guards either. Its batch axis is dynamic, the spatial axes
are the patch size. OpenVINO is asked for float32 (``INFERENCE_PRECISION_HINT``): by default it
may pick bfloat16 on CPUs that have it, which moved logits by 0.13 here.

Example:
    >>> runner = load_runner(checkpoint, network, meta, "onnxruntime")  # doctest: +SKIP
    >>> runner(torch.zeros(8, 1, 40, 56, 40)).shape  # doctest: +SKIP
    torch.Size([8, 3, 40, 56, 40])
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from autoseg.utils.files import atomic_path
from autoseg.utils.lookup import unknown_name

__all__ = [
    "AUTO_ORDER", "BACKENDS", "EXPORTS", "REMOVED", "ExportError", "choose_backend", "export_network",
    "load_runner",
]  # fmt: skip

log = logging.getLogger(__name__)

BACKENDS = ("torch", "torch-export", "onnxruntime", "openvino")
# ``auto`` on the CPU: the first of these whose packages are installed (fastest first, measured in
# benchmarks/RESULTS.md: OpenVINO about 2x torch's speed per forward pass here, onnxruntime 1.4x)
AUTO_ORDER = ("openvino", "onnxruntime")
AUTO_NEEDS = {"openvino": ("openvino", "onnx"), "onnxruntime": ("onnxruntime", "onnx")}
EXPORTS = {"onnx": ".onnx", "torch-export": ".pt2"}
BACKEND_EXPORT = {"torch-export": "torch-export", "onnxruntime": "onnx", "openvino": "onnx"}
#: What replaced a removed backend or export, for the message that names it.
REMOVED = {
    "torchscript": "TorchScript (torch.jit) is deprecated by torch since 2.13 and no longer made here; "
    "use torch-export (torch.export, a .pt2 beside each checkpoint), onnxruntime or openvino"
}
EXTRAS = {"onnxruntime": "onnxruntime", "openvino": "openvino", "onnx": "onnx"}
MAX_ABS_DIFF = 1e-3
MIN_DICE = 0.999
RECORD_VERSION = 1


class ExportError(RuntimeError):
    """An export that does not reproduce the torch network (or could not be made)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(module: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        extra = "openvino" if module == "openvino" else "onnx"
        raise ImportError(
            f"{what} needs the Python package {module!r}: pip install 'autoseg[{extra}]' "
            f"(or pip install {EXTRAS.get(module, module)})"
        ) from err


def _export_file(network: nn.Module, example: Tensor, kind: str, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the check below decides
        if kind == "onnx":
            _require("onnx", "ONNX export")
            with atomic_path(path, suffix=".onnx") as tmp:
                torch.onnx.export(
                    network,
                    (example,),
                    str(tmp),
                    input_names=["image"],
                    output_names=["logits"],
                    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                    dynamo=False,
                )
        else:  # the batch axis dynamic (the example has 2 items: a size-1 axis would be specialised)
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(network, (torch.cat([example, example]),),
                                          dynamic_shapes=({0: batch},))  # fmt: skip
            with atomic_path(path, suffix=".pt2") as tmp:
                torch.export.save(program, str(tmp))


def _sample(shape: tuple[int, ...], seed: int) -> Tensor:
    """A smooth synthetic case (1, C, *patch): blurred noise, so the argmax forms regions."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, *shape, generator=gen)
    pool = torch.nn.functional.avg_pool3d if len(shape) == 4 else torch.nn.functional.avg_pool2d
    return pool(x, 5, stride=1, padding=2) * 3


def dice_of_argmax(a: Tensor, b: Tensor) -> float:
    """Mean Dice over the classes present in either argmax of logits (B, K, ...); 1.0 if equal."""
    sa, sb = a.argmax(1), b.argmax(1)
    scores = []
    for k in range(a.shape[1]):
        ka, kb = sa == k, sb == k
        total = int(ka.sum() + kb.sum())
        if total:
            scores.append(2 * int((ka & kb).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0


def check_equivalence(
    network: nn.Module, runner: Callable[[Tensor], Tensor], shape: tuple[int, ...], sample: Tensor | None
) -> dict[str, Any]:
    """Max abs logit difference on a random input and argmax Dice on ``sample`` (or a synthetic one)."""
    random = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    case = sample if sample is not None else _sample(shape, seed=1)
    with torch.inference_mode():
        diff = float((runner(random) - network(random)).abs().max())
        dice = dice_of_argmax(runner(case), network(case))
    return {
        "max_abs_diff_random": diff,
        "dice_argmax": dice,
        "dice_case": "real" if sample is not None else "synthetic (blurred noise)",
        "input_shape": list(shape),
        "ok": diff <= MAX_ABS_DIFF and dice >= MIN_DICE,
    }


def export_network(
    checkpoint: Path,
    network: nn.Module,
    meta: dict[str, Any],
    kind: str,
    sample: Tensor | None = None,
    force: bool = False,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Export ``network`` (the torch network of ``checkpoint``) as ``kind`` beside it, checked; the record.

    Args:
        checkpoint: the fold's ``checkpoint_*.pt``.
        network: its network in eval mode on the CPU (:func:`~autoseg.inference.model.load_fold_network`).
        meta: the checkpoint's metadata (``in_channels``, ``patch_size``).
        kind: ``onnx`` or ``torch-export``.
        sample: a real preprocessed case (1, C, *patch) for the argmax check, if available.
        force: export again even if a matching record exists (one checked only on synthetic input is
            exported and checked again when ``sample`` is given).
        folder: where the export and its record go (default: beside the checkpoint).

    Raises:
        ExportError: the export differs from torch beyond the tolerances (nothing is kept).
    """
    if kind in REMOVED:
        raise ValueError(f"export {kind!r}: {REMOVED[kind]}")
    if kind not in EXPORTS:
        raise ValueError(f"unknown export {kind!r}; choose one of {', '.join(EXPORTS)}")
    path = (folder or checkpoint.parent) / checkpoint.with_suffix(EXPORTS[kind]).name
    record_path = path.with_name(path.name + ".json")
    ckpt_hash = sha256_of(checkpoint)
    if not force and record_path.is_file() and path.is_file():
        record = json.loads(record_path.read_text())
        same = record.get("checkpoint_sha256") == ckpt_hash and record.get("sha256") == sha256_of(path)
        # an export predict made (checked on synthetic input) is checked again when a real case is given
        as_strict = sample is None or record.get("check", {}).get("dice_case") == "real"
        if same and as_strict:
            return record
    shape = (int(meta["in_channels"]), *(int(p) for p in meta["patch_size"]))
    network = network.to("cpu").eval()
    _export_file(network, torch.zeros(1, *shape), kind, path)
    checker = _checker(kind)
    runner = _open(path, checker)
    check = {**check_equivalence(network, runner, shape, sample), "checked_with": checker}
    if not check["ok"]:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{path}: the {kind} export does not reproduce the torch network: max |logit difference| "
            f"{check['max_abs_diff_random']:.2e} (allowed {MAX_ABS_DIFF}), argmax Dice "
            f"{check['dice_argmax']:.4f} (required {MIN_DICE}); nothing kept"
        )
    record = {
        "kind": kind,
        "record_version": RECORD_VERSION,
        "file": path.name,
        "sha256": sha256_of(path),
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": ckpt_hash,
        "check": check,
        "versions": _versions(),
    }
    with atomic_path(record_path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    log.info("%s: %s export checked (max |diff| %.1e, Dice %.4f)", path, kind, check["max_abs_diff_random"],
             check["dice_argmax"])  # fmt: skip
    return record


def _checker(kind: str) -> str:
    """The runtime an export is checked with: torch-export its own, onnxruntime for ONNX, else OpenVINO."""
    if kind == "torch-export":
        return "torch-export"
    import importlib.util

    return next((b for b in ("onnxruntime", "openvino") if importlib.util.find_spec(b)), "onnxruntime")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"torch": str(torch.__version__)}
    for pkg in ("onnx", "onnxruntime", "openvino"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


class _NumpyRunner:
    """A session that takes and returns numpy arrays, called with and returning torch tensors."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], name: str) -> None:
        self.run, self.name = run, name

    def __call__(self, x: Tensor) -> Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(np.asarray(self.run(array)))

    def __repr__(self) -> str:
        return f"<{self.name} session>"


class _ProgramRunner:
    """A loaded torch.export program, called like the network; not an ``nn.Module``, since exported
    programs are traced in eval mode and refuse ``.train()`` / ``.eval()`` (which the sliding window
    calls on modules)."""

    def __init__(self, module: Callable[[Tensor], Tensor]) -> None:
        self.module = module

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x.to("cpu", torch.float32))

    def __repr__(self) -> str:
        return "<torch.export program>"


def _open(path: Path, backend: str) -> Callable[[Tensor], Tensor]:
    threads = torch.get_num_threads()
    if backend == "torch-export":
        return _ProgramRunner(torch.export.load(str(path)).module())
    if backend == "onnxruntime":
        ort = _require("onnxruntime", "--backend onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return _NumpyRunner(lambda a: session.run(None, {"image": a})[0], "onnxruntime")
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = _openvino_core().compile_model(str(path), "CPU", config)
    return _NumpyRunner(lambda a: compiled(a)[0], "openvino")


@functools.cache
def _openvino_core() -> Any:
    """The process's one OpenVINO ``Core``: a new Core per model ended long processes with SIGSEGV
    (the full test suite here, 2 of 2 runs; ultralytics/ultralytics#25864 saw the same after ~20
    loads), and one Core per application is OpenVINO's own usage."""
    return _require("openvino", "--backend openvino").Core()


def choose_backend(requested: str, device: torch.device) -> tuple[str, str]:
    """The backend to run and why: ``requested`` itself, or for ``auto`` the fastest one installed.

    ``auto`` is torch on a GPU (the exports run on the CPU only) and on the CPU the first backend of
    :data:`AUTO_ORDER` whose packages import, else torch, saying which package is missing.

    Example:
        >>> choose_backend("auto", torch.device("cuda"))
        ('torch', 'auto: torch on cuda (the exported backends run on the CPU)')
    """
    if requested != "auto":
        return requested, "asked for"
    if device.type != "cpu":
        return "torch", f"auto: torch on {device.type} (the exported backends run on the CPU)"
    import importlib.util

    for name in AUTO_ORDER:
        if all(importlib.util.find_spec(module) is not None for module in AUTO_NEEDS[name]):
            return name, "auto: the fastest backend installed for the CPU"
    return "torch", (
        "auto: torch, the only backend installed (pip install 'autoseg[openvino]' for the fastest CPU one)"
    )


def load_runner(
    checkpoint: Path,
    network: nn.Module,
    meta: dict[str, Any],
    backend: str,
    device: torch.device,
) -> Callable[[Tensor], Tensor]:
    """The fold's network as a callable (B, C, *patch) -> logits (B, K, *patch) on ``backend``.

    ``torch`` returns ``network`` itself; the others export it first if there is no matching export
    (see the module docstring). They run on the CPU: another ``device`` is an error. ``auto`` is
    :func:`choose_backend`'s choice.
    """
    if backend in REMOVED:
        raise ValueError(f"--backend {backend}: {REMOVED[backend]}")
    backend = choose_backend(backend, device)[0]
    if backend not in BACKENDS:
        raise ValueError(unknown_name("backend", backend, (*BACKENDS, "auto")))
    if backend == "torch":
        return network
    if device.type != "cpu":
        raise ValueError(
            f"--backend {backend} runs on the CPU; use --device cpu or --backend torch on {device}"
        )
    kind = BACKEND_EXPORT[backend]
    folder = export_folder(checkpoint)
    record = export_network(checkpoint, network, meta, kind, folder=folder)
    return _open(folder / record["file"], backend)


def export_folder(checkpoint: Path) -> Path:
    """Where a checkpoint's exports are kept: beside it, or when its folder is read-only (a shared
    model) in ``$AUTOSEG_CACHE`` (default ``~/.cache/autoseg``) under ``exports/<sha256 of the
    checkpoint, 16 digits>/``, so that the default command works on models it cannot write to."""
    import os

    if os.access(checkpoint.parent, os.W_OK):
        return checkpoint.parent
    cache = Path(os.environ.get("AUTOSEG_CACHE") or Path.home() / ".cache" / "autoseg")
    folder = cache / "exports" / sha256_of(checkpoint)[:16]
    folder.mkdir(parents=True, exist_ok=True)
    log.info("%s is read-only: its export is kept in %s", checkpoint.parent, folder)
    return folder
