"""``autoseg plan --gpu-memory``: a number of GB, or ``auto`` for the memory of the visible GPU(s).

The default stays nnU-Net's fixed 8 GB, so plans do not depend on the machine that made them;
``auto`` is an explicit choice, and where the number came from is recorded in plans.json
(``planner.gpu_memory_source``).
"""

from __future__ import annotations

import torch


def visible_gpu_memory_gb() -> tuple[float, str]:
    """The memory of the smallest visible CUDA GPU in GiB, and a description of where it came from.

    Example:
        >>> visible_gpu_memory_gb()  # doctest: +SKIP
        (139.8, 'auto: NVIDIA H200, GPU 0 of 1 visible, 139.8 GiB')

    Raises:
        ValueError: no CUDA GPU is visible to torch.
    """
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        build = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'not built in'}"
        raise ValueError(
            f"--gpu-memory auto: no CUDA GPU is visible to torch ({build}); give the memory to plan "
            "for in GB instead (e.g. --gpu-memory 24), or leave it out for the default 8"
        )
    count = torch.cuda.device_count()
    sizes = [(torch.cuda.get_device_properties(i).total_memory / 1024**3, i) for i in range(count)]
    size, index = min(sizes)
    name = torch.cuda.get_device_properties(index).name
    return round(size, 1), f"auto: {name}, GPU {index} of {count} visible, {size:.1f} GiB"


def parse_gpu_memory(text: str) -> tuple[float, str]:
    """``--gpu-memory`` -> (GB, source): a positive number, or ``auto`` (:func:`visible_gpu_memory_gb`).

    Raises:
        ValueError: neither a positive number nor ``auto``.
    """
    if text.strip().lower() == "auto":
        return visible_gpu_memory_gb()
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"--gpu-memory {text!r}: give a positive number of GB (e.g. 24) or 'auto'")
    return value, "--gpu-memory"
