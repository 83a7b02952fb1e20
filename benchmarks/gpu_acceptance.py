"""One command that proves autoseg's GPU training path: speed, memory, kill-and-resume, prediction.

On a GPU (a bundle made by ``benchmarks/gpu_bundle.py``; see benchmarks/README.md)::

    python benchmarks/gpu_acceptance.py --device cuda --preprocessed pre/Dataset004_Hippocampus

In CI, on the CPU, on a synthetic dataset planned here (so that the script never rots)::

    python benchmarks/gpu_acceptance.py --device cpu --quick

Steps (each training run is its own process, as a user's would be):

1. ``straight``: fold 0 of the configuration for a fixed budget (amp; torch.compile except with
   ``--quick`` on the CPU), ``augment_on=auto`` (on CUDA the first epoch measures the data wait
   with augmentation in the workers and decides);
2. ``killed``: the same run, killed with SIGKILL in the middle of an epoch, then resumed with
   ``resume=True``; its per-epoch losses are compared with ``straight``'s (bit-identical with
   ``--deterministic``, else within ``LOSS_TOLERANCE``);
3. ``device``: one epoch with augmentation forced onto the device (``Augmenter.apply_batch``), for
   its data-wait share (in this process);
4. prediction of up to ``--cases`` validation cases with mirroring TTA (sliding window on the
   preprocessed images, Dice against the preprocessed labels, no resampling or export);

and prints one table (also written as JSON to ``--out``/acceptance.json). Needs only torch, numpy,
monai and tqdm (plus SimpleITK for ``--quick`` without ``--preprocessed``, which plans a synthetic
dataset first). Exit code 1 when the resumed run does not match.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOSS_TOLERANCE = 0.05  # max |train loss difference| per epoch, resumed vs straight, non-deterministic
CONFIGURATION = "3d_fullres"


def budget(quick: bool) -> dict[str, int]:
    """Epochs, iterations and where to kill: a fixed budget (GPU) or a few steps (``--quick``)."""
    if quick:
        return {"epochs": 3, "iterations": 3, "val_iterations": 1, "kill_epoch": 1, "kill_iteration": 1}
    return {"epochs": 5, "iterations": 50, "val_iterations": 5, "kill_epoch": 2, "kill_iteration": 25}


# --------------------------------------------------------------------------- the training child


def child(payload: dict[str, Any]) -> None:
    """One training run in this process; SIGKILLs itself at step ``kill_at`` when given."""
    from autoseg.contracts import Plans
    from autoseg.planning.splits import SPLITS_SCHEMA_VERSION
    from autoseg.training import loop
    from autoseg.training.config import TrainerConfig
    from autoseg.training.setup import FoldSpec, fold_cases, train_fold
    from autoseg.utils.files import read_artifact

    pre = Path(payload["preprocessed"])
    plans = Plans.load(pre / "default" / "plans.json")
    splits = read_artifact(pre / "splits.json", "splits", SPLITS_SCHEMA_VERSION)["folds"]
    names = list(plans.case_names)
    train, val = fold_cases(splits, 0, names)
    spec = FoldSpec(pre, plans, CONFIGURATION, 0, tuple(train), tuple(val), Path(payload["output"]))
    kill_at = payload.get("kill_at")
    if kill_at is not None:
        step, calls = loop.optimisation_step, [0]

        def killing_step(*args: Any, **kwargs: Any) -> Any:
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-epoch, no clean-up: as a crash would be
            calls[0] += 1
            return step(*args, **kwargs)

        loop.optimisation_step = killing_step  # type: ignore[assignment]
    cfg = TrainerConfig.from_mapping(payload["trainer"])
    train_fold(spec, cfg, torch.device(payload["device"]), resume=bool(payload.get("resume")))


def run_child(payload: dict[str, Any], log: Path) -> tuple[int, float]:
    """Run :func:`child` in a fresh process; (exit code, wall seconds). Output goes to ``log``."""
    start = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(payload)], stdout=out, stderr=subprocess.STDOUT
        )
    return proc.returncode, time.perf_counter() - start


# --------------------------------------------------------------------------- the steps


def trainer(args: argparse.Namespace, b: dict[str, int], **changes: Any) -> dict[str, Any]:
    from autoseg.training.config import TrainerConfig

    cfg = TrainerConfig(
        epochs=b["epochs"],
        iterations_per_epoch=b["iterations"],
        val_iterations=b["val_iterations"],
        amp=True,
        # the GPU's own choice (bf16, or fp16 + scaler on older cards); the CPU twin runs bf16 autocast,
        # which amp_dtype=auto leaves off on CPUs without bf16 in hardware
        amp_dtype="bfloat16" if str(args.device).startswith("cpu") else "auto",
        compile=args.compile,
        deterministic=args.deterministic,
        augment_on="auto",
        final_validation=False,
        num_workers=0 if args.quick else None,
        seed=12345,
    )
    return dataclasses.replace(cfg, **changes).to_dict()


def train_runs(args: argparse.Namespace, pre: Path, out: Path) -> dict[str, Any]:
    """straight, killed + resumed, device augmentation; the histories and wall times."""
    b = budget(args.quick)
    log = out / "training.log"
    base = {"preprocessed": str(pre), "device": args.device, "trainer": trainer(args, b)}
    times: dict[str, float] = {}
    code, times["straight"] = run_child({**base, "output": str(out / "straight")}, log)
    if code != 0:
        raise SystemExit(f"the straight training run failed (exit {code}); see {log}")
    killed = {**base, "output": str(out / "killed")}
    kill_at = b["kill_epoch"] * b["iterations"] + b["kill_iteration"]
    code, times["killed"] = run_child({**killed, "kill_at": kill_at}, log)
    if code != -signal.SIGKILL:
        raise SystemExit(f"the run to be killed ended with {code}, not SIGKILL; see {log}")
    code, times["resumed"] = run_child({**killed, "resume": True}, log)
    if code != 0:
        raise SystemExit(f"the resumed run failed (exit {code}); see {log}")
    device_trainer = trainer(args, {**b, "epochs": 1}, augment_on="device")
    start = time.perf_counter()  # in this process: one interpreter start-up less
    child({**base, "trainer": device_trainer, "output": str(out / "device")})
    times["device"] = time.perf_counter() - start
    read = lambda name: json.loads((out / name / "history.json").read_text())  # noqa: E731
    run = json.loads((out / "straight" / "run.json").read_text())
    return {
        "straight": read("straight"),
        "resumed": read("killed"),
        "device": read("device"),
        "augment_on": run["augment_on"],
        "precision": run["precision"],
        "wall_s": times,
        "kill_at": {"epoch": b["kill_epoch"], "iteration": b["kill_iteration"]},
    }


def predict_cases(args: argparse.Namespace, pre: Path, out: Path) -> dict[str, Any]:
    """Mirroring-TTA sliding-window prediction of validation cases with the straight run's final net."""
    from autoseg.contracts import Plans
    from autoseg.data.cases import PreprocessedCases
    from autoseg.evaluation.metrics import confusion_counts, dice_from_counts
    from autoseg.inference.sliding_window import predict_sliding_window
    from autoseg.nets.factory import build_network
    from autoseg.training.checkpoint import load_checkpoint

    device = torch.device(args.device)
    state = load_checkpoint(out / "straight" / "checkpoint_final.pt")
    plans = Plans.load(pre / "default" / "plans.json")
    conf = plans.configuration(CONFIGURATION)
    labels = list(plans.labels.class_values)
    net = build_network(conf.architecture, plans.num_channels, plans.labels.num_outputs).to(device)
    net.load_state_dict(state["network"])
    folder = pre / "default" / conf.data_identifier
    splits = json.loads((pre / "splits.json").read_text())["folds"]
    names = sorted(splits[0]["val"])[: args.cases]
    cases = PreprocessedCases(folder, names)
    dice, seconds = [], 0.0
    foreground = [v for v in labels if v != 0]
    for name in names:
        data, seg, _ = cases.load(name)
        image = torch.from_numpy(data.copy())
        start = time.perf_counter()
        logits = predict_sliding_window(
            net, image, state["patch_size"], len(labels), 0.5, state["mirror_axes"], device=device, amp=True
        )
        prediction = logits.argmax(0)
        seconds += time.perf_counter() - start
        target = torch.from_numpy(seg[0].astype("int64")).clamp(min=0)
        tp, fp, fn = confusion_counts(prediction[None], target[None], foreground)
        dice.append([float(d) for d in dice_from_counts(tp, fp, fn)])
    per_label = [sum(d[i] for d in dice) / len(dice) for i in range(len(foreground))]
    return {"cases": len(names), "s_per_case": seconds / len(names), "dice_per_label": per_label}


def synthetic_dataset(out: Path) -> Path:
    """``--quick`` without ``--preprocessed``: a tiny synthetic dataset, planned and preprocessed here."""
    from autoseg.io.dataset import load_raw_dataset
    from autoseg.planning.presets import PlannerConfig
    from autoseg.planning.stages import DatasetFolders, run_fingerprint, run_plan, run_preprocess
    from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

    spec = SyntheticSpec(num_cases=6, classes=1, shape=(20, 24, 24), noise=0.05, distractors=False, seed=3)
    raw = generate_dataset(out / "raw" / "Dataset930_Acceptance", spec)
    folders = DatasetFolders.for_dataset(out / "pre", load_raw_dataset(raw))
    run_fingerprint(raw, folders, num_workers=1)
    plans, _ = run_plan(folders, PlannerConfig(configurations=(CONFIGURATION,)))
    run_preprocess(raw, folders, plans, [CONFIGURATION], num_workers=1)
    return folders.root


# --------------------------------------------------------------------------- the table


def compare(straight: list[dict], resumed: list[dict], deterministic: bool) -> dict[str, Any]:
    """Whether the killed-and-resumed run's per-epoch train losses match the straight run's."""
    a, b = [r["train_loss"] for r in straight], [r["train_loss"] for r in resumed]
    same_epochs = [r["epoch"] for r in straight] == [r["epoch"] for r in resumed]
    diff = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0) if same_epochs else float("inf")
    if deterministic:
        ok, rule = same_epochs and a == b, "bit-identical (trainer.deterministic=true)"
    else:
        ok, rule = same_epochs and diff <= LOSS_TOLERANCE, f"|train loss diff| <= {LOSS_TOLERANCE} per epoch"
    return {"match": ok, "rule": rule, "max_loss_diff": diff, "straight": a, "resumed": b}


def summarise(args: argparse.Namespace, runs: dict[str, Any], predicted: dict[str, Any]) -> dict[str, Any]:
    history = runs["straight"]
    steady = history[1:] or history  # epoch 0 pays worker start-up and compilation
    steps = sum(r["train_time"] for r in steady)
    iterations = len(steady) * budget(args.quick)["iterations"]
    peaks = [r["peak_gpu_mem_gb"] for r in history + runs["device"] if r.get("peak_gpu_mem_gb") is not None]
    decision = runs["augment_on"]
    workers_share = decision.get("data_wait_share", sum(r["steady_wait_share"] for r in steady) / len(steady))
    return {
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "torch": torch.__version__,
        "precision": runs["precision"],
        "iterations_per_s": iterations / steps,
        "samples_per_s": sum(r["samples_per_s"] for r in steady) / len(steady),
        "data_wait_share_workers": workers_share,
        "workers": "the main process" if args.quick else "the loader's workers",
        "data_wait_share_device": runs["device"][0]["steady_wait_share"],
        "augment_on_auto": decision,
        "peak_gpu_mem_gb": max(peaks) if peaks else None,
        "predict": predicted,
        "val_dice": sum(predicted["dice_per_label"]) / len(predicted["dice_per_label"]),
        "resume": compare(history, runs["resumed"], args.deterministic),
        "kill_at": runs["kill_at"],
        "wall_s": runs["wall_s"],
    }


def table(s: dict[str, Any]) -> str:
    p, r = s["precision"], s["resume"]
    mem = f"{s['peak_gpu_mem_gb']:.2f} GB" if s["peak_gpu_mem_gb"] is not None else "n/a (not CUDA)"
    rows = [
        ("device", f"{s['device']} {s['gpu'] or ''}".strip() + f", torch {s['torch']}"),
        ("precision", f"autocast {p['autocast']}, grad scaler {p['grad_scaler']}, compile {p['compile']}"),
        ("iterations/s (epochs 1+)", f"{s['iterations_per_s']:.2f}"),
        ("samples/s (epochs 1+)", f"{s['samples_per_s']:.1f}"),
        (f"data-wait share, augmentation in {s['workers']}", f"{s['data_wait_share_workers']:.1%}"),
        ("data-wait share, augmentation on device", f"{s['data_wait_share_device']:.1%}"),
        ("augment_on=auto chose", f"{s['augment_on_auto']['used']} ({s['augment_on_auto']['reason']})"),
        ("peak GPU memory", mem),
        (
            "predict s/case (TTA, preprocessed space)",
            f"{s['predict']['s_per_case']:.3f} ({s['predict']['cases']} cases)",
        ),
        ("val Dice (mean over labels)", f"{s['val_dice']:.4f}"),
        (
            f"SIGKILL at epoch {s['kill_at']['epoch']} it {s['kill_at']['iteration']}, resumed == straight",
            f"{'yes' if r['match'] else 'NO'}: {r['rule']}, max diff {r['max_loss_diff']:.3g}",
        ),
        ("wall s (straight/killed/resumed/device)", " / ".join(f"{v:.0f}" for v in s["wall_s"].values())),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    return "\n".join([*lines, *(f"| {k.ljust(width)} | {v} |" for k, v in rows)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="a few steps (CI); no torch.compile on the CPU")
    p.add_argument("--preprocessed", type=Path, default=None, help="<preprocessed>/<Dataset> with plans")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "work" / "gpu_acceptance")
    p.add_argument("--cases", type=int, default=20, help="validation cases to predict")
    p.add_argument("--deterministic", action="store_true", help="demand a bit-identical resumed run")
    p.add_argument(
        "--compile",
        default=None,
        choices=["on", "off"],
        help="torch.compile (default: on, off for --quick on CPU)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick_cpu = args.quick and args.device == "cpu"
    args.compile = (args.compile or ("off" if quick_cpu else "on")) == "on"
    args.deterministic = args.deterministic or quick_cpu  # CPU runs resume bit-identically
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        child(json.loads(args.child))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to torch; use --device cpu --quick")
    if args.deterministic and args.device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism (children inherit)
    out = args.out
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    start = time.perf_counter()
    pre = args.preprocessed
    if pre is None:
        if not args.quick:
            raise SystemExit(
                "give --preprocessed <preprocessed>/<Dataset> (benchmarks/README.md), or --quick"
            )
        pre = synthetic_dataset(out / "data")
    runs = train_runs(args, pre.resolve(), out)
    summary = summarise(args, runs, predict_cases(args, pre.resolve(), out))
    summary["total_s"] = time.perf_counter() - start
    (out / "acceptance.json").write_text(json.dumps(summary, indent=2))
    print(table(summary))
    print(
        f"total {summary['total_s']:.0f} s; details in {out / 'acceptance.json'}, log {out / 'training.log'}"
    )
    return 0 if summary["resume"]["match"] else 1


if __name__ == "__main__":
    sys.exit(main())
