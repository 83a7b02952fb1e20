"""How much memory ``autoseg predict`` needs for a case, and how much it used (logged, in predict.json).

The estimate follows the arrays the pipeline holds (:mod:`autoseg.inference.run`: one case read and
preprocessed, one through the networks, one exported, at the same time):

* reading and preprocessing: the native images (float32) and up to three copies of the cropped,
  normalised and resampled data;
* the networks: the network-grid input, the sliding window's float32 accumulators (K logits and one
  weight per voxel), one fold's logits beside the running sum;
* the export: the logits handed on (float32, or float16 for very large ones), one slab of native
  probabilities (and the resampler's intermediates, about three slabs), and the mask (cropped,
  pasted, transposed, written): about four native-sized label maps. With ``--save-probabilities``
  the native probabilities (K x the volume, float32) are held whole, twice (reverted and saved).

A baseline covers the interpreter, torch and the networks' weights. The measured peak is the
process' ``ru_maxrss``.

Example:
    >>> est = predict_memory_estimate(2, (1, 64, 64, 64), (1, 32, 32, 32), 2 * 4 * 32**3, False)
    >>> est["total_mib"] > est["baseline_mib"]
    True
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence

import numpy as np

from autoseg.inference.native import DEFAULT_SLAB_BYTES, slab_rows

__all__ = ["BASELINE_BYTES", "peak_rss_mib", "predict_memory_estimate"]

BASELINE_BYTES = 600 * 2**20  # interpreter, torch, SimpleITK, a network's weights and workspace
_MIB = 2**20


def predict_memory_estimate(
    num_outputs: int,
    native: Sequence[int],
    network_input: Sequence[int],
    held_bytes: int,
    keep_probabilities: bool,
    slab_bytes: int = DEFAULT_SLAB_BYTES,
    weights_bytes: int = 0,
) -> dict[str, int]:
    """Estimated peak memory (MiB) of predicting one case, by stage, and their sum.

    Args:
        num_outputs: K, the networks' output channels.
        native: (C, Z, Y, X) of the case as read.
        network_input: (C', Z', Y', X') of the largest configuration's preprocessed data.
        held_bytes: the network-grid outputs held until the case is exported (all configurations).
        keep_probabilities: ``--save-probabilities`` (the native probabilities are held whole).
        slab_bytes: the streaming exporter's slab budget.
        weights_bytes: the networks' parameters (all folds), added to the baseline.

    Returns:
        ``{"prepare_mib", "networks_mib", "export_mib", "baseline_mib", "total_mib"}``.
    """
    k = int(num_outputs)
    channels, *spatial = (int(v) for v in native)
    voxels = int(np.prod(spatial, dtype=np.int64))
    net_voxels = int(np.prod(network_input[1:], dtype=np.int64))
    prepare = 4 * voxels * channels + 3 * 4 * int(network_input[0]) * net_voxels
    networks = 4 * int(network_input[0]) * net_voxels + 4 * (2 * k + 1) * net_voxels
    held = int(held_bytes)
    label_bytes = 1 if k <= 255 else 2
    rows = slab_rows(k, spatial[1:], slab_bytes)
    slab = 3 * 4 * k * rows * int(np.prod(spatial[1:], dtype=np.int64))
    export = held + slab + 4 * label_bytes * voxels
    if keep_probabilities:
        export += 2 * 4 * k * voxels
    baseline = BASELINE_BYTES + int(weights_bytes)
    parts = {"prepare_mib": prepare, "networks_mib": networks, "export_mib": export, "baseline_mib": baseline}
    out = {key: int(round(v / _MIB)) for key, v in parts.items()}
    out["total_mib"] = int(round(sum(parts.values()) / _MIB))
    return out


def peak_rss_mib() -> int:
    """This process's peak resident memory so far (``ru_maxrss``) in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(round(peak / (_MIB if sys.platform == "darwin" else 1024)))  # bytes on macOS, KiB on Linux
