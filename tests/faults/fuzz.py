"""Fuzzed inputs: seeded byte flips and truncations of NIfTI / NRRD headers and DICOM files.

Each fuzzed file goes through ``autoseg validate`` and ``autoseg plan`` (as one case of a small
dataset) or ``autoseg predict`` (as the only input), in a worker process with a timeout per case.
The outcome is one of:

- ``ok``: exit 0 (the mutation left the file usable, e.g. a flip in a description field);
- ``clean``: a non-zero exit with a message naming the file, and no traceback;
- ``traceback``: an exception escaped ``main`` or a traceback was printed;
- ``hang``: no answer within the timeout (the worker is killed and a new one started).

Used by ``tests/faults/test_fuzz.py`` (few inputs) and ``benchmarks/bench_faults.py --long``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import multiprocessing
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = (".nii.gz", ".nii", ".nrrd", "dicom")
HEADER_BYTES = {".nii.gz": 352, ".nii": 352, ".nrrd": 200, "dicom": 1024}


@dataclass(frozen=True)
class FuzzCase:
    """One mutated input: its kind, what was done to it, and where it lies."""

    kind: str
    mutation: str
    path: Path  # the mutated image file, or the DICOM series folder


def _mutate(data: bytes, rng: random.Random, header: int) -> tuple[bytes, str]:
    """Flip 1-4 bytes in the first ``header`` bytes, or cut the file short."""
    if rng.random() < 0.6:
        out = bytearray(data)
        offsets = sorted(rng.randrange(min(header, len(out))) for _ in range(rng.randint(1, 4)))
        for off in offsets:
            out[off] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
        return bytes(out), f"flip bytes {offsets}"
    cut = rng.randrange(1, len(data))
    return data[:cut], f"truncate to {cut} of {len(data)} bytes"


def make_cases(base: dict[str, Path], out: Path, count: int, seed: int) -> list[FuzzCase]:
    """``count`` mutated inputs per kind from the valid ``base`` files (a file, or a DICOM folder)."""
    rng = random.Random(seed)
    cases = []
    for kind, source in base.items():
        for i in range(count):
            target = out / f"{kind.strip('.').replace('.', '_')}_{i:03d}"
            target.mkdir(parents=True)
            if kind == "dicom":
                shutil.copytree(source, target / "series")
                victim = rng.choice(sorted((target / "series").iterdir()))
                mutated, what = _mutate(victim.read_bytes(), rng, HEADER_BYTES[kind])
                victim.write_bytes(mutated)
                cases.append(FuzzCase(kind, f"{victim.name}: {what}", target / "series"))
                continue
            raw = source.read_bytes()
            if kind == ".nii.gz":  # mutate the header itself, not the compressed stream
                mutated, what = _mutate(gzip.decompress(raw), rng, HEADER_BYTES[kind])
                mutated = gzip.compress(mutated, mtime=0)
            else:
                mutated, what = _mutate(raw, rng, HEADER_BYTES[kind])
            path = target / f"case_0000{kind}"
            path.write_bytes(mutated)
            cases.append(FuzzCase(kind, what, path))
    return cases


def run_cli(argv: list[str], names: str | None = None) -> tuple[str, str]:
    """Run ``autoseg ARGV`` in this process: (outcome, last line of its messages).

    With ``names`` (a damaged file's name), a clean error that does not name it is ``unnamed``.
    """
    from autoseg.cli import main

    out, err = io.StringIO(), io.StringIO()
    logging.root.handlers = [logging.StreamHandler(err)]  # main's basicConfig then leaves them
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except BaseException as exc:  # anything escaping main is the finding
        return "traceback", f"{type(exc).__name__}: {exc}"[:300]
    text = out.getvalue() + err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip() and "it/s]" not in ln]
    last = lines[-1][:300] if lines else ""
    if "Traceback (most recent call last)" in text:
        return "traceback", last
    if code != 0 and names is not None and names not in text:
        return "unnamed", last
    return ("ok" if code == 0 else "clean"), last


def run_all(jobs: list[tuple[Any, ...]], timeout: float) -> list[tuple[str, str, str]]:
    """Run each ``(label, argv)`` (or ``(label, argv, the damaged file's name)``) in a worker process;
    ``(label, outcome, message)`` in order.

    A job without an answer after ``timeout`` seconds is a ``hang``: its worker is killed and the
    next job gets a fresh one.
    """
    results = []
    # spawn, not fork: a fork of this (multi-threaded, OpenMP-initialised) process can deadlock
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=context)
    try:
        for label, argv, *names in jobs:
            future = pool.submit(run_cli, argv, *names)
            try:
                outcome, message = future.result(timeout=timeout)
            except FutureTimeout:
                outcome, message = "hang", f"no answer within {timeout:g} s"
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(1, mp_context=context)
            except Exception as exc:  # the worker itself died (e.g. a segfault in a reader)
                outcome, message = "crash", f"{type(exc).__name__}: {exc}"[:300]
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(1, mp_context=context)
            results.append((label, outcome, message))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def table(results: list[tuple[str, str, str]]) -> str:
    """Markdown: per stage and kind, inputs tried, ok, clean errors, tracebacks, hangs."""
    lines = [
        "| stage | input | inputs tried | correct result | clean errors | errors not naming the file "
        "| tracebacks | hangs/crashes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[str]] = {}
    for label, outcome, _ in results:
        stage, kind = label.split(" ", 2)[:2]
        groups.setdefault((stage, kind), []).append(outcome)
    for (stage, kind), outcomes in groups.items():
        n = {o: outcomes.count(o) for o in ("ok", "clean", "unnamed", "traceback", "hang", "crash")}
        lines.append(
            f"| {stage} | {kind} | {len(outcomes)} | {n['ok']} | {n['clean']} | {n['unnamed']} | "
            f"{n['traceback']} | {n['hang'] + n['crash']} |"
        )
    return "\n".join(lines)


def datasets(base: Path, cases: list[FuzzCase]) -> dict[FuzzCase, Path]:
    """A small dataset per fuzzed image file: three cases, the last one's image the fuzzed file."""
    from tests.io.helpers import make_dataset

    made: dict[str, Path] = {}
    out = {}
    for case in cases:
        if case.kind == "dicom":
            continue
        if case.kind not in made:
            made[case.kind] = make_dataset(
                base / f"template{case.kind.replace('.', '_')}" / "Dataset960_Fuzz",
                num_cases=3,
                ending=case.kind,
            )
        root = case.path.parent / "Dataset960_Fuzz"
        shutil.copytree(made[case.kind], root)
        shutil.copyfile(case.path, root / "imagesTr" / f"case_002_0000{case.kind}")
        out[case] = root
    return out


def base_files(folder: Path) -> dict[str, Path]:
    """A valid image of each kind (8 x 10 x 12 voxels) and a 5-slice DICOM series."""
    from autoseg.io.images import write_image
    from tests.io.helpers import geometry, image_array
    from tests.io.test_dicom import write_series

    files: dict[str, Path] = {}
    for kind in KINDS[:3]:
        files[kind] = write_image(image_array(0), geometry(), folder / f"base_0000{kind}")
    write_series(folder / "dicom", n=5, rows=12, cols=10)
    files["dicom"] = folder / "dicom"
    return files


def jobs(cases: list[FuzzCase], work: Path, model: Path) -> list[tuple[str, list[str]]]:
    """validate and plan for each fuzzed image file, predict for each input (DICOM included)."""
    found = datasets(work, cases)
    out = []
    for i, case in enumerate(cases):
        label = f"{case.kind} {i} {case.mutation}"
        if case in found:
            root = found[case]
            out.append((f"validate {label}", ["validate", str(root), "--num-workers", "0"]))
            pre = case.path.parent / "pre"
            plan = ["plan", str(root), f"paths.preprocessed={pre}", "num_folds=2", "-c", "3d_fullres"]
            out.append((f"plan {label}", [*plan, "--num-workers", "0"]))
        source = case.path if case.kind == "dicom" else case.path.parent / "input"
        if case.kind != "dicom":
            source.mkdir(exist_ok=True)
            shutil.copyfile(case.path, source / case.path.name)
        predict = ["predict", "-i", str(source), "-o", str(case.path.parent / "out"), "-m", str(model)]
        out.append((f"predict {label}", [*predict, "-f", "0", "--device", "cpu", "--no-tta"]))
    return out


# ---------------------------------------------------------------------------------------------
# results folders, checkpoints and JSON artifacts through find-best, ensemble, evaluate,
# export-model and report (issue 21)

#: target -> (the file to damage, relative to the model root or "heldout"; the command that reads it)
ARTIFACTS = {
    "validation mask": ("default/3d_fullres/fold_1/validation/*.nii.gz", "find-best"),
    "validation summary": ("default/3d_fullres/fold_0/validation/summary.json", "find-best"),
    "probabilities": ("default/3d_fullres/fold_0/validation/*.npz", "ensemble"),
    "prediction": ("default/3d_fullres/fold_0/validation/*.nii.gz", "evaluate"),
    "checkpoint": ("default/3d_fullres/fold_1/checkpoint_final.pt", "export-model"),
    "selection.json": ("selection.json", "report"),
    "history.json": ("default/3d_fullres/fold_0/history.json", "report"),
}


def link_tree(source: Path, target: Path) -> None:
    """A copy of ``source`` made of hard links (files are replaced, never written in place)."""
    import os

    shutil.copytree(source, target, copy_function=os.link)


def _damage(path: Path, rng: random.Random) -> str:
    """Flip bytes anywhere in ``path`` or truncate it (the link is replaced by a new file)."""
    raw = path.read_bytes()
    if path.name.endswith(".nii.gz") and rng.random() < 0.5:  # the header inside the stream
        mutated, what = _mutate(gzip.decompress(raw), rng, HEADER_BYTES[".nii.gz"])
        mutated, what = gzip.compress(mutated, mtime=0), f"header: {what}"
    else:
        mutated, what = _mutate(raw, rng, len(raw))
    path.unlink()
    path.write_bytes(mutated)
    return what


def artifact_jobs(
    scn_raw: Path, results: Path, overrides: list[str], work: Path, count: int, seed: int
) -> list[tuple[str, list[str], str]]:
    """``count`` damaged copies per artifact of a validated results folder (``results/<Dataset>``),
    each with the command that reads it: ``(label, argv, the damaged file's name)``."""
    rng = random.Random(seed)
    out = []
    for target, (pattern, command) in ARTIFACTS.items():
        for i in range(count):
            root = work / f"{target.replace(' ', '_').replace('.', '_')}_{i:03d}"
            link_tree(results.parent, root / "results")
            model = root / "results" / results.name
            victim = rng.choice(sorted(model.glob(pattern)))
            what = _damage(victim, rng)
            paths = [f"paths.results={root / 'results'}", *overrides]
            val = model / "default" / "3d_fullres" / "fold_0" / "validation"
            argv = {
                "find-best": ["find-best", str(scn_raw), *paths, "--num-workers", "1"],
                "ensemble": ["ensemble", "-i", str(val), str(val), "-o", str(root / "ensemble")],
                "evaluate": ["evaluate", str(val), str(scn_raw / "labelsTr"), "--predicted-only"],
                "export-model": ["export-model", str(scn_raw), "-o", str(root / "m.zip"), *paths],
                "report": ["report", str(scn_raw), "-o", str(root / "r.html"), "--thumbnails", "0", *paths],
            }[command]
            if command == "evaluate":
                argv += ["-o", str(root / "summary.json"), "--num-workers", "1"]
            out.append((f"{command} {target.replace(' ', '_')} {i} {victim.name}: {what}", argv, victim.name))
    return out
