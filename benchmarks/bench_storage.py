#!/usr/bin/env python
"""Compare storage formats for preprocessed training cases (what the training loader reads).

Two synthetic float32 cases shaped like a normalized image (smooth random field, zero
mean / unit std, plus 10 % white noise):

* ``hippo``: (1, 36, 50, 35), patch 40x56x40 (larger than the image on two axes: the
  patch read then returns the clipped region, as a loader would before padding);
* ``ct``:    (1, 150, 512, 512), patch 128x128x128.

Formats:

* ``npy``            np.save; patch: np.load(mmap_mode="r") + slice + np.array();
* ``npz``            np.savez_compressed; no random access, so a patch costs a full load;
* ``b2nd-shuffle``   blosc2.asarray, LZ4HC clevel 5, SHUFFLE filter,
* ``b2nd-nofilter``  same with NOFILTER (nnU-Net v2.8 trial-compresses one chunk with both
                     filters and keeps the smaller; the chosen one is marked with *),
  with blocks/chunks from nnU-Net v2.8's ``comp_blosc2_params`` (ported below) for the
  case's patch size; written with 4 compression threads and read with 1 thread and
  ``blosc2.open(mmap_mode="r")`` like nnU-Net's nnUNetDatasetBlosc2.

Per format: bytes on disk, write time (median of --write-reps), time to read one random
patch (median of --patch-reads, each re-opening the file as a loader does per sample)
and time to read the full case (median of --full-reads).  All reads are from the warm OS
page cache (the files were just written; nothing is dropped), so they measure
decode/copy cost, not disk speed.

Usage: python benchmarks/bench_storage.py [--out benchmarks/work/storage] [--cases hippo ct]
       [--patch-reads 50] [--json-out FILE] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

try:
    import blosc2
except ImportError:  # not in autoseg's dependencies: --help still works, main() says what to install
    blosc2 = None
import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent

CASES = {
    "hippo": ((1, 36, 50, 35), (40, 56, 40)),
    "ct": ((1, 150, 512, 512), (128, 128, 128)),
}


# --------------------------------------------------------------------------------------
# nnU-Net v2.8 block/chunk heuristic (nnunetv2.training.dataloading.nnunet_dataset
# .comp_blosc2_params, Apache-2.0), condensed.  Checked against nnunetv2 2.8.1:
#   (1,36,50,35),(40,56,40)     -> blocks (1,32,32,32) chunks (1,36,50,35)
#   (1,150,512,512),(128,)*3    -> blocks (1,32,32,32) chunks (1,96,128,128)
# --------------------------------------------------------------------------------------
def comp_blosc2_params(
    image_size: Sequence[int],
    patch_size: Sequence[int],
    bytes_per_pixel: int = 4,
    max_block_nbytes: int = 128 * 1024,
    max_chunk_nbytes: int = 6 * 1024**2,
    max_ratio: float = 1.5,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    def ceil_pow2(n: int) -> int:
        return 1 if n <= 1 else 1 << (n - 1).bit_length()

    def prev_pow2_below(n: int) -> int:
        return 1 if n <= 1 else 1 << ((n - 1).bit_length() - 1)

    def nbytes(shape: Sequence[int]) -> int:
        return math.prod(shape) * bytes_per_pixel

    is_2d = len(patch_size) == 2
    patch = (1, *patch_size) if is_2d else tuple(patch_size)
    img = tuple(image_size[1:])
    target = tuple(max(1, min(img[a], int(math.floor(max_ratio * patch[a])))) for a in range(3))

    block = [1] + [min(ceil_pow2(p), i) for p, i in zip(patch, img, strict=True)]
    cap = min(max_block_nbytes, max_chunk_nbytes)
    while nbytes(block) > cap:
        axes = [a for a in range(3) if block[a + 1] > 1]
        ax = max(axes, key=lambda a: (block[a + 1] / target[a], a))
        block[ax + 1] = prev_pow2_below(block[ax + 1])

    chunk = block.copy()
    while True:
        cands = []
        for a in range(3):
            if (is_2d and a == 0) or patch[a] == 1 or chunk[a + 1] >= img[a] or chunk[a + 1] >= target[a]:
                continue
            cand = chunk.copy()
            cand[a + 1] = min(cand[a + 1] + block[a + 1], img[a], target[a])
            if cand[a + 1] == chunk[a + 1] or nbytes(cand) > max_chunk_nbytes:
                continue
            cands.append((chunk[a + 1] / target[a], -img[a], a, -nbytes(cand), cand))
        if not cands:
            break
        chunk = min(cands, key=lambda c: c[:4])[4]
    return tuple(block), tuple(chunk)


# --------------------------------------------------------------------------------------
def make_case(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth random field (linear upsampling of 8x coarser noise), z-scored, + 10 % noise."""
    rng = np.random.default_rng(seed)
    spatial = shape[1:]
    coarse = rng.standard_normal([max(2, s // 8) for s in spatial]).astype(np.float32)
    smooth = ndimage.zoom(coarse, [s / c for s, c in zip(spatial, coarse.shape, strict=True)], order=1)
    smooth = smooth[tuple(slice(0, s) for s in spatial)]
    smooth -= smooth.mean()
    smooth /= smooth.std()
    smooth += 0.1 * rng.standard_normal(spatial, dtype=np.float32)
    return np.ascontiguousarray(smooth[None].astype(np.float32))


def random_patch_slices(shape: Sequence[int], patch: Sequence[int], rng: np.random.Generator):
    sl = [slice(None)]
    for s, p in zip(shape[1:], patch, strict=True):
        if p >= s:
            sl.append(slice(0, s))
        else:
            lo = int(rng.integers(0, s - p + 1))
            sl.append(slice(lo, lo + p))
    return tuple(sl)


def median_time(fn: Callable[[], object], n: int) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def b2_select_filter(data: np.ndarray, blocks, chunks) -> str:
    """nnU-Net v2.8's choice: trial-compress a centered one-chunk slab with both filters."""
    slab_shape = [min(c, s) for c, s in zip(chunks, data.shape, strict=True)]
    sl = tuple(slice((s - ss) // 2, (s - ss) // 2 + ss) for s, ss in zip(data.shape, slab_shape, strict=True))
    slab = np.ascontiguousarray(data[sl])
    tb = tuple(max(1, min(b, ss)) for b, ss in zip(blocks, slab_shape, strict=True))
    sizes = {}
    for name, f in (("nofilter", blosc2.Filter.NOFILTER), ("shuffle", blosc2.Filter.SHUFFLE)):
        cp = {"codec": blosc2.Codec.LZ4HC, "clevel": 5, "nthreads": 4, "filters": [f]}
        sizes[name] = blosc2.asarray(slab, chunks=tuple(slab_shape), blocks=tb, cparams=cp).schunk.cbytes
    return "shuffle" if sizes["shuffle"] < sizes["nofilter"] else "nofilter"


def bench_case(name: str, shape, patch, out: Path, args) -> list[dict]:
    print(f"\n== {name}: shape {shape} float32 ({math.prod(shape) * 4 / 2**20:.1f} MiB), patch {patch}")
    t0 = time.perf_counter()
    data = make_case(shape)
    print(f"   generated in {time.perf_counter() - t0:.1f}s")
    blocks, chunks = comp_blosc2_params(shape, patch, 4)
    nnunet_filter = b2_select_filter(data, blocks, chunks)
    print(f"   blosc2 blocks {blocks} chunks {chunks}; nnU-Net would pick filter {nnunet_filter}")
    rng = np.random.default_rng(1)
    patch_slices = [random_patch_slices(shape, patch, rng) for _ in range(args.patch_reads)]
    out.mkdir(parents=True, exist_ok=True)
    rows = []

    def record(
        fmt: str,
        path: Path,
        write: Callable[[], None],
        read_patch: Callable[[tuple], np.ndarray],
        read_full: Callable[[], np.ndarray],
        write_reps: int,
    ) -> None:
        write_s = median_time(write, write_reps)
        full = read_full()
        assert full.shape == data.shape and np.array_equal(full, data), f"{fmt}: round trip mismatch"
        p = read_patch(patch_slices[0])
        assert np.array_equal(p, data[patch_slices[0]]), f"{fmt}: patch mismatch"
        it = iter(patch_slices)
        patch_s = median_time(lambda: read_patch(next(it)), len(patch_slices))
        full_s = median_time(read_full, args.full_reads)
        size = path.stat().st_size
        rows.append(
            {
                "case": name,
                "shape": list(shape),
                "patch": list(patch),
                "format": fmt,
                "bytes": size,
                "ratio": data.nbytes / size,
                "write_s": write_s,
                "patch_read_s": patch_s,
                "full_read_s": full_s,
            }
        )
        print(
            f"   {fmt:16s} {size / 2**20:9.2f} MiB  write {write_s * 1e3:8.1f} ms  "
            f"patch {patch_s * 1e3:8.2f} ms  full {full_s * 1e3:8.1f} ms",
            flush=True,
        )

    wreps = args.write_reps if math.prod(shape) < 10**6 else 1

    # .npy + mmap
    f_npy = out / f"{name}.npy"
    record(
        "npy (mmap)",
        f_npy,
        lambda: np.save(f_npy, data),
        lambda sl: np.array(np.load(f_npy, mmap_mode="r")[sl]),
        lambda: np.load(f_npy),
        wreps,
    )

    # .npz compressed (zlib): full load for everything
    f_npz = out / f"{name}.npz"

    def npz_full() -> np.ndarray:
        with np.load(f_npz) as z:
            return z["data"]

    record(
        "npz (zlib)",
        f_npz,
        lambda: np.savez_compressed(f_npz, data=data),
        lambda sl: npz_full()[sl],
        npz_full,
        wreps,
    )

    # blosc2 NDArray, nnU-Net v2.8 settings
    dparams = {"nthreads": 1}
    for fname, filt in (("shuffle", blosc2.Filter.SHUFFLE), ("nofilter", blosc2.Filter.NOFILTER)):
        f_b2 = out / f"{name}_{fname}.b2nd"
        cparams = {"codec": blosc2.Codec.LZ4HC, "clevel": 5, "nthreads": 4, "filters": [filt]}

        def write(f_b2=f_b2, cparams=cparams) -> None:
            blosc2.asarray(data, urlpath=str(f_b2), mode="w", chunks=chunks, blocks=blocks, cparams=cparams)

        def b2_open(f_b2=f_b2):
            return blosc2.open(urlpath=str(f_b2), mode="r", dparams=dparams, mmap_mode="r")

        mark = "*" if fname == nnunet_filter else ""
        record(
            f"b2nd-{fname}{mark}",
            f_b2,
            write,
            lambda sl, o=b2_open: o()[sl],
            lambda o=b2_open: o()[...],
            wreps,
        )
    return rows


def fmt_table(rows: list[dict]) -> str:
    head = ["case", "format", "MiB on disk", "ratio", "write [ms]", "patch read [ms]", "full read [ms]"]
    body = [
        [
            r["case"],
            r["format"],
            f"{r['bytes'] / 2**20:.2f}",
            f"{r['ratio']:.2f}",
            f"{r['write_s'] * 1e3:.1f}",
            f"{r['patch_read_s'] * 1e3:.2f}",
            f"{r['full_read_s'] * 1e3:.1f}",
        ]
        for r in rows
    ]
    align = "|".join("---" if i < 2 else "---:" for i in range(len(head)))
    lines = ["| " + " | ".join(head) + " |", "|" + align + "|"]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "work" / "storage")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["hippo", "ct"])
    ap.add_argument("--patch-reads", type=int, default=50)
    ap.add_argument("--full-reads", type=int, default=5)
    ap.add_argument("--write-reps", type=int, default=5, help="for the small case (large: 1)")
    ap.add_argument("--json-out", type=Path, default=None, help="default: <out>/bench_storage.json")
    ap.add_argument("--keep", action="store_true", help="keep the written files")
    args = ap.parse_args(argv)
    if blosc2 is None:
        sys.exit("bench_storage.py compares with nnU-Net's blosc2 format: pip install blosc2")

    print(f"numpy {np.__version__}, blosc2 {blosc2.__version__}; reads use the warm page cache")
    out = args.out.resolve()
    rows = []
    try:
        for name in args.cases:
            shape, patch = CASES[name]
            rows += bench_case(name, shape, patch, out / name, args)
    finally:
        if not args.keep:
            for name in args.cases:
                shutil.rmtree(out / name, ignore_errors=True)
    print("\n" + fmt_table(rows))
    print(
        "(* = the filter nnU-Net v2.8 would choose; patch read = open + read one random patch, "
        "median; npz has no random access so a patch costs a full load)"
    )
    json_out = args.json_out or out / "bench_storage.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(
        json.dumps({"numpy": np.__version__, "blosc2": blosc2.__version__, "rows": rows}, indent=2)
    )
    print(f"wrote {json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
