#!/usr/bin/env python
"""ResEnc U-Net: autoseg's network beside nnU-Net's on the same plans (parameters, memory, step time).

Plans: autoseg's planner with the ``resenc-m``, ``resenc-l`` and ``resenc-xl`` presets on

* **hippocampus**: the fingerprint of ``--dataset`` (default ../shared/data/Dataset004_Hippocampus);
* **large-CT**: a synthetic MSD-Lung-like fingerprint (63 CT cases, spacing 1.245 x 0.785 x 0.785 mm,
  median 252 x 512 x 512, 2 labels), for which the planner makes big patches and 6-7 stages.

For every configuration (2d, 3d_fullres, 3d_lowres) of every plan:

* ``autoseg``: parameters of ``autoseg.nets.build_network(architecture)`` (deep supervision on) and
  the conv feature-map elements of one sample counted with forward hooks on the built module,
  beside the plan's memory estimate (``memory.estimate_feature_map_elements``);
* ``nnU-Net``: the same plan in nnU-Net's format (``ResidualEncoderUNet``, ``n_blocks_per_stage``,
  ``n_conv_per_stage_decoder``, conv bias, InstanceNorm, LeakyReLU) through nnU-Net's
  ``get_network_from_plans``, its parameters and its ``compute_conv_feature_map_size(patch)``
  (what nnU-Net's planner budgets). Needs ``benchmarks/.nnunet-venv`` (``setup_nnunet.sh``); its
  pure-Python packages are imported from there. Without it the figures nnU-Net printed for the
  hippocampus ResEnc M plan (reference/nnunet-v2-facts.md §3) are shown instead.

Networks are counted on torch's ``meta`` device (no memory, no compute). Step time (``--time``):
for the hippocampus ResEnc M plan (2d and 3d_fullres) one training step on the CPU at the plan's
patch with ``--batch`` (3d) / ``--batch-2d`` samples (the plans' batches, 58 and 1615, are sized
for a GPU): forward, each tool's own deep-supervision Dice + CE loss
(autoseg ``DeepSupervisionLoss(DiceCELoss)``; nnU-Net ``DeepSupervisionWrapper(DC_and_CE_loss)``,
what nnU-Net's ResEnc trainer (the plain ``nnUNetTrainer``) uses), backward, clip to 12 and SGD
(momentum 0.99, Nesterov), alternating the two networks over ``--rounds`` rounds, first dropped:
median wall seconds and process CPU seconds per step.

Usage::

    .venv/bin/python benchmarks/bench_resenc.py [--dataset DIR] [--time] [--batch 2] [--batch-2d 32] \
        [--rounds 5] [--threads 2] [--json-out FILE] [--nnunet-venv DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from autoseg.commands.config import compose
from autoseg.io.dataset import load_raw_dataset
from autoseg.nets import build_network, count_parameters, deep_supervision_weights, feature_map_elements
from autoseg.planning.fingerprint import compute_fingerprint
from autoseg.planning.plans import build_plans
from autoseg.planning.presets import PlannerConfig

HERE = Path(__file__).resolve().parent
NNUNET_VENV = HERE / ".nnunet-venv"
DEFAULT_DATASET = HERE.parent.parent / "shared" / "data" / "Dataset004_Hippocampus"
PRESETS = ("resenc-m", "resenc-l", "resenc-xl")
# nnU-Net 2.8.1 on the 100-case hippocampus (reference/nnunet-v2-facts.md §3)
NNUNET_FACTS = {  # ResEnc L and XL plan the same 3d network there (batch 71)
    ("hippocampus", "resenc-m", "3d_fullres"): 25_895_593,
    ("hippocampus", "resenc-m", "2d"): 8_728_681,
    ("hippocampus", "resenc-l", "3d_fullres"): 25_895_593,
    ("hippocampus", "resenc-xl", "3d_fullres"): 25_895_593,
}


def large_ct_fingerprint() -> dict[str, Any]:
    """63 CT cases shaped like MSD Lung (what nnU-Net's reference plans were made for)."""
    case = {"spacing": [1.245, 0.785, 0.785], "shape_after_crop": [252, 512, 512]}
    return {
        "dataset_name": "Dataset999_LargeCT",
        "cases": [
            {"name": f"case_{i:03d}", **case, "shape_before_crop": case["shape_after_crop"]}
            for i in range(63)
        ],
        "labels": {"background": 0, "lesion": 1},
        "channel_names": {"0": "CT"},
        "median_relative_size_after_cropping": 1.0,
        "median_spacing": case["spacing"],
        "foreground_intensity_properties_per_channel": {"0": {"mean": 0.0, "std": 1.0}},
    }


def preset(name: str) -> PlannerConfig:
    data = OmegaConf.to_container(compose([f"planner={name}"]).planner, resolve=True)
    return PlannerConfig.from_mapping(data)  # type: ignore[arg-type]


def nnunet_architecture(arch: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """autoseg's ``architecture`` entry as nnU-Net's plans write a ResEnc network."""
    dim = len(arch["kernel_sizes"][0])
    kwargs = {
        "n_stages": arch["n_stages"],
        "features_per_stage": arch["features_per_stage"],
        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
        "kernel_sizes": arch["kernel_sizes"],
        "strides": arch["strides"],
        "n_blocks_per_stage": arch["blocks_per_stage_encoder"],
        "n_conv_per_stage_decoder": arch["blocks_per_stage_decoder"],
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    name = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    return name, kwargs, ["conv_op", "norm_op", "dropout_op", "nonlin"]


def nnunet_network(arch: dict[str, Any], in_channels: int, num_classes: int) -> nn.Module:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    name, kwargs, imports = nnunet_architecture(arch)
    return get_network_from_plans(name, kwargs, imports, in_channels, num_classes, True, True)


def conv_elements(net: nn.Module, in_channels: int, patch: list[int]) -> int:
    """Feature-map elements one sample produces in ``net`` (on the meta device)."""
    return feature_map_elements(net, (1, in_channels, *patch), torch.device("meta"))


def count_rows(plans_by_name: dict[tuple[str, str], dict[str, Any]], nnunet: bool) -> list[dict[str, Any]]:
    rows = []
    for (data, preset_name), plans in plans_by_name.items():
        channels, classes = len(plans["fingerprint"]["channel_names"]), len(plans["labels"])
        for conf_name, conf in plans["configurations"].items():
            arch = conf.get("architecture")
            if arch is None:
                continue
            with torch.device("meta"):
                net = build_network(arch, channels, classes)
            row = {
                "data": data, "preset": preset_name, "configuration": conf_name,
                "patch": conf["patch_size"], "batch": conf["batch_size"], "stages": arch["n_stages"],
                "blocks": arch["blocks_per_stage_encoder"], "autoseg_params": count_parameters(net),
                "autoseg_conv_elements": conv_elements(net, channels, conf["patch_size"]),
                "plan_estimate": conf["memory"]["estimate_feature_map_elements"],
            }  # fmt: skip
            if nnunet:
                with torch.device("meta"):
                    ref = nnunet_network(arch, channels, classes)
                row["nnunet_params"] = count_parameters(ref)
                row["nnunet_estimate"] = int(ref.compute_conv_feature_map_size(conf["patch_size"]))
                row["source"] = "get_network_from_plans"
            elif (data, preset_name, conf_name) in NNUNET_FACTS:
                row["nnunet_params"] = NNUNET_FACTS[(data, preset_name, conf_name)]
                row["source"] = "nnunet-v2-facts.md"
            rows.append(row)
    return rows


def step_times(plans: dict[str, Any], batches: dict[str, int], rounds: int) -> dict[str, Any]:
    """Median seconds of one training step, autoseg's network and loss beside nnU-Net's."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from autoseg.training.loss import DeepSupervisionLoss, DiceCELoss

    out: dict[str, Any] = {}
    classes = len(plans["labels"])
    for conf_name in ("3d_fullres", "2d"):
        conf = plans["configurations"][conf_name]
        arch, patch, batch = conf["architecture"], conf["patch_size"], batches[conf_name]
        weights = deep_supervision_weights(arch["n_stages"] - 1)
        torch.manual_seed(0)
        nets = {"autoseg": build_network(arch, 1, classes), "nnunet": nnunet_network(arch, 1, classes)}
        dc_ce = DC_and_CE_loss(
            {"batch_dice": bool(conf["batch_dice"]), "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
            weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss,
        )  # fmt: skip
        autoseg_loss = DeepSupervisionLoss(DiceCELoss(batch_dice=bool(conf["batch_dice"])), weights)
        nnunet_loss = DeepSupervisionWrapper(dc_ce, weights)

        def downsampled(y: torch.Tensor, heads: int, dims: int = len(patch)) -> list[torch.Tensor]:
            return [y[(slice(None), slice(None), *(slice(None, None, 2**i),) * dims)] for i in range(heads)]

        losses = {
            "autoseg": autoseg_loss,
            "nnunet": lambda o, y, loss=nnunet_loss: loss(o, downsampled(y, len(o))),
        }
        x, y = torch.randn(batch, 1, *patch), torch.randint(0, classes, (batch, 1, *patch))
        opts = {
            k: torch.optim.SGD(n.parameters(), 0.01, 0.99, nesterov=True, weight_decay=3e-5)
            for k, n in nets.items()
        }
        times: dict[str, list[float]] = {k: [] for k in nets}
        cpu: dict[str, list[float]] = {k: [] for k in nets}
        for r in range(rounds):
            for k in list(nets) if r % 2 == 0 else list(nets)[::-1]:
                t0, c0 = time.perf_counter(), time.process_time()
                opts[k].zero_grad(set_to_none=True)
                losses[k](nets[k].train()(x), y).backward()
                torch.nn.utils.clip_grad_norm_(nets[k].parameters(), 12)
                opts[k].step()
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        out[conf_name] = {
            "patch": patch,
            "batch": batch,
            **{k: statistics.median(v[1:]) for k, v in times.items()},
            **{f"{k}_cpu": statistics.median(v[1:]) for k, v in cpu.items()},
            "rounds": times,
            "rounds_cpu": cpu,
        }
        res = out[conf_name]
        shown = ", ".join(f"{k} {res[k]:.3f} s (CPU {res[k + '_cpu']:.3f} s)" for k in nets)
        print(f"  step {conf_name} patch {patch} batch {batch}: {shown}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--time", action="store_true", help="also time a training step (needs nnU-Net)")
    parser.add_argument("--batch", type=int, default=2, help="samples per step, 3d_fullres")
    parser.add_argument("--batch-2d", type=int, default=32, help="samples per step, 2d")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--nnunet-venv", type=Path, default=NNUNET_VENV, help="reference nnU-Net environment")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    nnunet = args.nnunet_venv.is_dir()
    if nnunet:
        sys.path.extend(str(s) for s in sorted(args.nnunet_venv.glob("lib/python3*/site-packages")))
    fingerprints = {
        "hippocampus": compute_fingerprint(load_raw_dataset(args.dataset), num_workers=args.threads),
        "large-CT": large_ct_fingerprint(),
    }
    plans = {(d, p): build_plans(fp, preset(p))[0] for d, fp in fingerprints.items() for p in PRESETS}
    rows = count_rows(plans, nnunet)
    print(
        "| data | preset | configuration | patch | batch | blocks | autoseg params | nnU-Net params | ratio "
        "| autoseg conv elements | plan estimate | nnU-Net estimate |"
    )
    print("|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ref = r.get("nnunet_params")
        ratio = f"{r['autoseg_params'] / ref:.4f}" if ref else "n/a"
        est = r.get("nnunet_estimate")
        print(
            f"| {r['data']} | {r['preset']} | {r['configuration']} | {'x'.join(map(str, r['patch']))} "
            f"| {r['batch']} "
            f"| {r['blocks']} | {r['autoseg_params']:,} | {f'{ref:,}' if ref else 'n/a'} | {ratio} "
            f"| {r['autoseg_conv_elements']:,} | {r['plan_estimate']:,} | {f'{est:,}' if est else 'n/a'} |"
        )
    source = f"get_network_from_plans ({args.nnunet_venv})" if nnunet else "nnunet-v2-facts.md"
    print(f"nnU-Net figures from: {source}")
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "counts": rows}
    if args.time:
        if not nnunet:
            raise SystemExit(f"--time needs nnU-Net in {args.nnunet_venv}: bash benchmarks/setup_nnunet.sh")
        result["step_s"] = step_times(
            plans[("hippocampus", "resenc-m")], {"3d_fullres": args.batch, "2d": args.batch_2d}, args.rounds
        )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
