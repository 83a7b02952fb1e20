"""A bound on predict's export memory for a many-class volume (60 classes, 64 x 160 x 160), so that a
regression to holding the native class probabilities whole fails.

Each measurement runs in a fresh subprocess: it builds network-grid logits (60, 32, 80, 80) and the
case's properties, records ``ru_maxrss``, exports the mask as ``autoseg predict`` does
(:func:`autoseg.inference.writer.export_prediction`) and reports how far the peak rose. The native
probabilities alone are 60 x 64 x 160 x 160 float32 = 375 MiB (the whole-array path makes several
such arrays); the slab-by-slab export needs a 64 MiB slab, its intermediates and what the allocator
keeps (~200 MiB). Peak numbers for the full-size case: benchmarks/RESULTS.md (bench_predict_memory.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NATIVE_PROBABILITIES_MIB = 60 * 64 * 160 * 160 * 4 / 2**20  # 375
BOUND_MIB = 400  # streaming rose by ~200 MiB here (slab, intermediates, allocator), the whole-array path ~810

SCRIPT = """
import json, resource, sys
from pathlib import Path
import numpy as np, torch
from autoseg.contracts.labels import LabelManager
from autoseg.contracts.plans import DEFAULT_RESAMPLING
from autoseg.inference.writer import export_prediction
from autoseg.io.images import Geometry
from autoseg.preprocessing.preprocess import revert_preprocessing

K = 60
labels = LabelManager.from_labels({"background": 0, **{f"c{k}": k for k in range(1, K)}})


def case(network, native):
    geometry = Geometry(native, (1.5, 0.8, 0.8), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    props = {
        "case": "big", "geometry": geometry.to_json(), "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2], "shape_before_cropping": list(native),
        "bbox_used_for_cropping": [[0, n] for n in native],
        "shape_after_cropping_and_before_resampling": list(native), "shape_after_resampling": list(network),
        "spacing": [1.5, 0.8, 0.8], "target_spacing": [3.0, 1.6, 1.6], "resampling": dict(DEFAULT_RESAMPLING),
    }
    logits = torch.randn((K, *network), generator=torch.Generator().manual_seed(0)).numpy()
    return [(logits, props)], geometry


def whole(members):  # the whole-array reference: native probabilities reverted at once, then argmax
    ((logits, props),) = members
    probs = labels.activate(torch.from_numpy(logits)).numpy()
    return labels.segmentation(revert_preprocessing(probs, props)), []


def streamed(members, geometry, name):
    return export_prediction(name, ".nii.gz", members, geometry, out, labels=labels, activated=False)


mode, out = sys.argv[2], Path(sys.argv[1])
# a small case first: one-time costs (lazy imports, BLAS and allocator set-up) are not per-case memory
small, geometry = case((4, 8, 8), (8, 16, 16))
whole(small) if mode == "whole" else streamed(small, geometry, "small")
members, geometry = case((32, 80, 80), (64, 160, 160))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seg, files = whole(members) if mode == "whole" else streamed(members, geometry, "big")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rise_mib": (after - before) / 1024, "shape": list(seg.shape),
                  "labels": int(len(np.unique(seg))), "files": sorted(f.name for f in files)}))
"""


def measure(tmp_path: Path, mode: str) -> dict:
    out = tmp_path / mode
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), mode],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_many_class_export_memory_is_bounded(tmp_path: Path) -> None:
    streaming = measure(tmp_path, "mask")
    assert streaming["shape"] == [64, 160, 160] and streaming["labels"] > 30
    assert streaming["files"] == ["big.nii.gz"]
    assert streaming["rise_mib"] < BOUND_MIB, streaming
    # the bound catches the whole-array path (what --save-probabilities needs, and what predict did)
    whole = measure(tmp_path, "whole")
    assert whole["rise_mib"] > max(BOUND_MIB, NATIVE_PROBABILITIES_MIB), whole
