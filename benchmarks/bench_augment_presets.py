#!/usr/bin/env python
"""Milliseconds per augmented training sample: the default augmentation beside ``augment=mr-artefacts``.

Everything a data worker does per sample (draw, read the crop from the memory-mapped case, augment,
and for the preset the five TorchIO transforms on the output patch), one torch thread, on the
preprocessed cases of a planned dataset (default: the MSD hippocampus in ../shared/data, planned
into ``--out`` when not there yet). Mean over ``--batches`` batches, median of ``--repeat`` runs.

Usage:
    python benchmarks/bench_augment_presets.py [--dataset PATH] [--batches 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


def _cases(dataset: Path, out: Path) -> tuple[Path, list[int], int]:
    from autoseg.contracts import Plans

    plans_file = out / dataset.name / "default" / "plans.json"
    if not plans_file.is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "autoseg",
                "plan",
                str(dataset),
                f"paths.preprocessed={out}",
                "-c",
                "3d_fullres",
            ],
            check=True,
        )
    plans = Plans.load(plans_file)
    conf = plans.configuration("3d_fullres")
    return plans_file.parent / conf.data_identifier, list(conf.patch_size), conf.batch_size


def _per_sample_ms(folder: Path, patch: list[int], batch: int, preset: str, batches: int) -> float:
    from autoseg.commands.config import compose
    from autoseg.data import Augmenter, BatchDataset, PatchSampler, PreprocessedCases
    from autoseg.training.config import TrainerConfig

    cfg = compose([f"augment={preset}"])
    trainer = TrainerConfig.from_mapping({}, OmegaConf.to_container(cfg.augment, resolve=True))  # type: ignore[arg-type]
    cases = PreprocessedCases(folder, sorted(p.name[: -len(".json")] for p in folder.glob("*.json")))
    augmenter = Augmenter(patch, trainer.augment, num_channels=cases.num_channels)
    dataset = BatchDataset(
        PatchSampler(cases, patch, batch, crop_size=augmenter.crop_size), augmenter, seed=1
    )
    dataset[0]  # warm up (imports, first reads)
    start = time.perf_counter()
    for k in range(1, batches + 1):
        dataset[k]
    return (time.perf_counter() - start) / (batches * batch) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--dataset", type=Path, default=REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "work" / "augment_presets")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder, patch, batch = _cases(args.dataset, args.out)
    print(f"{args.dataset.name}: patch {patch}, batch {batch}, {args.batches} batches x {args.repeat} runs")
    results = {}
    for preset in ("default", "mr-artefacts"):
        runs = [_per_sample_ms(folder, patch, batch, preset, args.batches) for _ in range(args.repeat)]
        results[preset] = statistics.median(runs)
        rounded = [round(r, 2) for r in runs]
        print(f"  augment={preset:<13} {results[preset]:7.2f} ms per sample (runs: {rounded})")
    print(f"  mr-artefacts / default: {results['mr-artefacts'] / results['default']:.2f}x")


if __name__ == "__main__":
    main()
