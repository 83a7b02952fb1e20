#!/usr/bin/env python
"""Training iterations per second on the CPU: autoseg's trainer beside nnU-Net v2's, same plan.

Both tools plan and preprocess the same raw dataset into fresh folders (``autoseg plan`` and
``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres -np 2 -npfp 2``, not timed), then each
trains fold 0 of ``3d_fullres`` for one short epoch in its own fresh process:

* **autoseg**: ``autoseg.training.setup.train_fold`` with ``TrainerConfig(epochs=1,
  iterations_per_epoch=N, val_iterations=V, num_workers=1, final_validation=False)``;
* **nnU-Net**: ``nnUNetTrainer(plans, '3d_fullres', 0, dataset_json, device=cpu)`` with
  ``num_epochs=1``, ``num_iterations_per_epoch=N``, ``num_val_iterations_per_epoch=V``, then
  ``run_training()`` (what ``nnUNetv2_train`` runs, without the final validation), with
  ``nnUNet_compile=false`` and ``nnUNet_n_proc_DA=1`` (one augmentation worker, like autoseg).
  This worker runs in ``benchmarks/.nnunet-venv`` (the same file, ``--worker nnunet``).

Both processes get ``torch.set_num_threads(--threads)`` (default: the number of CPUs, what
``nnUNetv2_train`` sets on the CPU and torch's default here); the value in effect during the
training steps is recorded.

Per training iteration the same hooks are used on both sides: forward pre-/post-hooks on the
network and the loss module and step pre-/post-hooks on the optimizer. From them:

* ``iteration`` = end of optimizer step ``i`` - end of step ``i - 1`` (everything, data included);
* ``data`` = start of forward ``i`` - end of step ``i - 1`` (waiting for the loader; both
  tools only do trivial work besides ``next(loader)`` there);
* ``forward``, ``loss``, ``backward`` (from the end of the loss to the optimizer step, so it
  includes gradient clipping), ``optimizer`` (the SGD step).

Iterations 0 and 1 are warm-up; the summary uses the median over iterations ``>= --warmup``.
After the epoch (data loaders finished or idle), the **step alone** is timed on one fixed batch
(the first training batch), ``--step-iterations`` times through each tool's own step code
(autoseg: ``train_epoch`` over ``itertools.repeat(batch)``; nnU-Net: ``trainer.train_step``),
first one discarded. With ``--repeat R`` the runs alternate nnU-Net/autoseg order.

Finally (``--ab-rounds``, 0 to skip; ``--only ab`` for this alone) an A/B in one autoseg
process on one random batch: nnU-Net's network (``get_network_from_plans`` on its plans,
imported from the nnU-Net environment's site-packages) and autoseg's, alternately, trained with
the same loss; then both losses (nnU-Net's ``DeepSupervisionWrapper(DC_and_CE_loss)``,
autoseg's ``DeepSupervisionLoss(DiceCELoss)``) forward + backward on the same outputs. Same
process, same conditions: this separates the network from the rest of each trainer.

Precision (``--precision all|default|bf16|fp32``, default all): autoseg runs with its default
(row ``autoseg``: ``amp_dtype=auto``, bf16 autocast where the CPU has bf16 in hardware, else
float32), with bf16 autocast forced (``autoseg-bf16``, ``amp_dtype=bfloat16``) and in float32
(``autoseg-fp32``, ``amp=False``), each beside nnU-Net, which trains in float32 on the CPU (it
autocasts on CUDA only); the ratios are per autoseg row, and each row says what it ran.

Usage::

    .venv/bin/python benchmarks/bench_train.py --dataset ../shared/data/Dataset004_Hippocampus \
        [--iterations 12] [--val-iterations 2] [--step-iterations 6] [--repeat 2] [--threads 2] \
        [--ab-rounds 6] [--only both|autoseg|nnunet|ab] [--precision all|default|bf16|fp32] \
        [--out benchmarks/work/bench_train] [--json-out FILE] [--prep-dir DIR] [--keep]

The parent process needs only the standard library; ``--prep-dir`` reuses (or creates) the
preprocessed folders in ``DIR`` instead of planning into a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_NNUNET_VENV = HERE / ".nnunet-venv"
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"
#: autoseg's precisions (--precision): the TrainerConfig fields of each, and its row in the table
PRECISIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "bf16": {"amp": True, "amp_dtype": "bfloat16"},
    "fp32": {"amp": False},
}
TOOL_OF = {"default": "autoseg", "bf16": "autoseg-bf16", "fp32": "autoseg-fp32"}
CONFIGURATION = "3d_fullres"
PHASES = ("data", "forward", "loss", "backward", "optimizer")


# --------------------------------------------------------------------------------------
# timing hooks (run inside the workers; torch is imported by the caller)
# --------------------------------------------------------------------------------------
class StepClock:
    """Time stamps of every training step, from hooks on network, loss and optimizer.

    Only steps with the network in training mode are recorded (validation forwards are not).
    """

    def __init__(self, network: Any, loss: Any, optimizer: Any) -> None:
        import torch

        self.torch = torch
        self.network = network
        self.steps: list[dict[str, float]] = []
        self.cur: dict[str, float] = {}
        self.last_end: float | None = None
        self.info: dict[str, Any] = {}
        self.first_fwd: float | None = None
        network.register_forward_pre_hook(self._fwd_start)
        network.register_forward_hook(self._fwd_end)
        loss.register_forward_pre_hook(self._loss_start)
        loss.register_forward_hook(self._loss_end)
        optimizer.register_step_pre_hook(self._step_start)
        optimizer.register_step_post_hook(self._step_end)

    def mark(self, t: float | None = None) -> None:
        """Start a new series (e.g. the step-only loop): the next step has no predecessor."""
        self.last_end = t
        self.cur = {}

    def _fwd_start(self, module: Any, args: Any) -> None:
        if not module.training:
            return
        now = time.perf_counter()
        if self.first_fwd is None:
            self.first_fwd = now
        self.cur = {"fwd_start": now, "threads": self.torch.get_num_threads()}
        if self.last_end is not None:
            self.cur["prev_end"] = self.last_end
        if "threads" not in self.info:
            x = args[0]
            self.info.update(
                threads=self.torch.get_num_threads(),
                interop_threads=self.torch.get_num_interop_threads(),
                input_shape=list(x.shape),
                input_dtype=str(x.dtype),
            )

    def _fwd_end(self, module: Any, args: Any, output: Any) -> None:
        if module.training:
            self.cur["fwd_end"] = time.perf_counter()

    def _loss_start(self, module: Any, args: Any) -> None:
        if self.network.training and "target" not in self.info:
            out, target = args[0], args[1]
            describe = self._describe
            self.info.update(outputs=describe(out), target=describe(target))

    def _describe(self, x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return [self._describe(v) for v in x]
        return f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"

    def _loss_end(self, module: Any, args: Any, output: Any) -> None:
        if self.network.training and "fwd_end" in self.cur:
            self.cur["loss_end"] = time.perf_counter()

    def _step_start(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.cur["step_start"] = time.perf_counter()

    def _step_end(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        now = time.perf_counter()
        self.cur["step_end"] = now
        self.steps.append(self.cur)
        self.cur = {}
        self.last_end = now

    def series(self) -> list[dict[str, float]]:
        """Per step: iteration and phase durations in seconds (iteration/data absent for the first)."""
        out = []
        for s in self.steps:
            d = {
                "forward": s["fwd_end"] - s["fwd_start"],
                "loss": s["loss_end"] - s["fwd_end"],
                "backward": s["step_start"] - s["loss_end"],
                "optimizer": s["step_end"] - s["step_start"],
                "compute": s["step_end"] - s["fwd_start"],
                "threads": s["threads"],
            }
            if "prev_end" in s:
                d["iteration"] = s["step_end"] - s["prev_end"]
                d["data"] = s["fwd_start"] - s["prev_end"]
            out.append(d)
        return out


def _pop_steps(clock: StepClock) -> list[dict[str, float]]:
    series = clock.series()
    clock.steps = []
    return series


# --------------------------------------------------------------------------------------
# worker: autoseg (runs in the autoseg environment)
# --------------------------------------------------------------------------------------
def worker_autoseg(p: dict[str, Any]) -> dict[str, Any]:
    import dataclasses
    import itertools

    import torch

    torch.set_num_threads(p["threads"])
    from autoseg.planning.splits import SPLITS_SCHEMA_VERSION
    from autoseg.planning.stages import DatasetFolders, read_plans
    from autoseg.training import loop as loop_mod
    from autoseg.training import setup as setup_mod
    from autoseg.training.config import TrainerConfig
    from autoseg.utils.files import read_artifact

    t_start = time.perf_counter()
    roots = sorted(Path(p["preprocessed"]).glob("*/splits.json"))
    if len(roots) != 1:
        raise SystemExit(f"expected one dataset with splits.json under {p['preprocessed']}, found {roots}")
    folders = DatasetFolders(roots[0].parent)
    plans = read_plans(folders, "default")
    splits = read_artifact(folders.splits, "splits", SPLITS_SCHEMA_VERSION)["folds"]
    train, val = setup_mod.fold_cases(splits, 0, list(plans.case_names))
    spec = setup_mod.FoldSpec(
        preprocessed=folders.root,
        plans=plans,
        configuration=CONFIGURATION,
        fold=0,
        train_cases=tuple(train),
        val_cases=tuple(val),
        output=Path(p["results"]) / "fold_0",
    )
    cfg = TrainerConfig(
        epochs=1,
        iterations_per_epoch=p["iterations"],
        val_iterations=p["val_iterations"],
        num_workers=1,
        final_validation=False,
        **PRECISIONS[p.get("precision", "default")],
    )
    held: dict[str, Any] = {}
    original_build = setup_mod.build_parts

    def build_parts(*args: Any, **kwargs: Any) -> Any:
        parts = original_build(*args, **kwargs)
        held["clock"] = StepClock(parts.network, parts.loss, parts.optimizer)
        source = parts.train_batches

        def first_kept() -> Any:
            for k, batch in enumerate(source):
                if k == 0:
                    held["batch"] = batch
                yield batch

        parts.train_batches = first_kept()
        held["parts"] = parts
        return parts

    setup_mod.build_parts = build_parts  # train_fold looks it up in the module
    state = setup_mod.train_fold(spec, cfg, torch.device("cpu"))
    t_trained = time.perf_counter()
    clock: StepClock = held["clock"]
    train_steps = _pop_steps(clock)
    epoch = state.history[-1]

    # the step alone: the loop's own train_epoch on the first batch, repeated
    parts = dataclasses.replace(held["parts"], train_batches=itertools.repeat(held["batch"]))
    clock.mark()
    loop_mod.train_epoch(parts, dataclasses.replace(cfg, iterations_per_epoch=p["step_iterations"]), 1)
    step_only = _pop_steps(clock)
    conf = plans.configuration(CONFIGURATION)
    dtype = held["parts"].autocast_dtype
    import monai

    return {
        "tool": TOOL_OF[p.get("precision", "default")],
        "precision": f"{str(dtype).removeprefix('torch.')} autocast" if dtype is not None else "float32",
        "amp": cfg.amp,
        "versions": {"torch": torch.__version__, "monai": monai.__version__},
        "patch_size": list(conf.patch_size),
        "batch_size": conf.batch_size,
        "network": type(getattr(parts.network, "_orig_mod", parts.network)).__name__,
        "parameters": sum(q.numel() for q in parts.network.parameters()),
        "train_cases": len(train),
        "info": clock.info,
        "startup_s": clock.first_fwd - t_start,
        "epoch_wall_s": t_trained - t_start,
        "loop_reported": {k: epoch[k] for k in ("train_time", "data_wait", "samples_per_s", "epoch_time")},
        "train_steps": train_steps,
        "step_only": step_only,
    }


# --------------------------------------------------------------------------------------
# worker: nnU-Net (runs in benchmarks/.nnunet-venv)
# --------------------------------------------------------------------------------------
def worker_nnunet(p: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata

    import torch

    torch.set_num_threads(p["threads"])  # nnUNetv2_train does set_num_threads(cpu_count()) on the CPU
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    t_start = time.perf_counter()
    base = Path(p["nnunet_preprocessed"]) / p["nnunet_name"]
    plans = load_json(str(base / "nnUNetPlans.json"))
    plans["continue_training"] = False  # what get_trainer_from_args adds
    dataset_json = load_json(str(base / "dataset.json"))
    trainer = nnUNetTrainer(plans, CONFIGURATION, 0, dataset_json, device=torch.device("cpu"))
    trainer.num_epochs = 1
    trainer.num_iterations_per_epoch = p["iterations"]
    trainer.num_val_iterations_per_epoch = p["val_iterations"]
    trainer.initialize()
    if trainer._do_i_compile():
        raise SystemExit("nnU-Net would torch.compile the network; set nnUNet_compile=false")
    clock = StepClock(trainer.network, trainer.loss, trainer.optimizer)
    held: dict[str, Any] = {}
    original_step = trainer.train_step

    def train_step(batch: dict) -> dict:
        held.setdefault("batch", batch)
        return original_step(batch)

    trainer.train_step = train_step
    trainer.run_training()  # on_train_end shuts the augmentation workers down
    t_trained = time.perf_counter()
    train_steps = _pop_steps(clock)

    trainer.network.train()
    clock.mark()
    for _ in range(p["step_iterations"]):
        original_step(held["batch"])
    step_only = _pop_steps(clock)
    conf = plans["configurations"][CONFIGURATION]  # nnU-Net's plans are a plain dict
    return {
        "tool": "nnunet",
        "precision": "float32" if trainer.device.type == "cpu" else "autocast",  # no autocast on the CPU
        "versions": {"torch": torch.__version__, "nnunetv2": importlib.metadata.version("nnunetv2")},
        "patch_size": conf["patch_size"],
        "batch_size": trainer.batch_size,
        "network": type(trainer.network).__name__,
        "parameters": sum(q.numel() for q in trainer.network.parameters()),
        "train_cases": len(trainer.do_split()[0]),
        "info": clock.info,
        "startup_s": clock.first_fwd - t_start,
        "epoch_wall_s": t_trained - t_start,
        "train_steps": train_steps,
        "step_only": step_only,
    }


# --------------------------------------------------------------------------------------
# worker: A/B of networks and losses in one process (autoseg environment)
# --------------------------------------------------------------------------------------
def worker_ab(p: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net's network and loss beside autoseg's, alternating, in one process, on one random batch.

    nnU-Net's pure-Python packages (nnunetv2, dynamic_network_architectures) are imported from
    the nnU-Net environment's site-packages, appended to ``sys.path`` (torch, numpy and any
    package autoseg has come from the autoseg environment). Networks are built from each
    tool's own plans (nnU-Net: ``get_network_from_plans`` as ``nnUNetTrainer`` does, with its
    initialisation). Both networks are trained with the same loss (autoseg's) for the
    network comparison; the losses are then compared on the same (detached) outputs, each
    with the targets its trainer gets (nnU-Net: a list of int16 targets per head, autoseg: one
    int64 target). Rounds alternate the order; the first round is dropped.
    """
    import torch

    torch.set_num_threads(p["threads"])
    site = sorted(Path(p["nnunet_venv"]).glob("lib/python3*/site-packages"))
    sys.path.extend(str(s) for s in site)
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from autoseg.contracts import Plans
    from autoseg.nets.factory import build_network, deep_supervision_weights
    from autoseg.training.loss import DeepSupervisionLoss, DiceCELoss

    aplans = Plans.load(next(Path(p["preprocessed"]).glob("*/default/plans.json")))
    nplans = json.loads((Path(p["nnunet_preprocessed"]) / p["nnunet_name"] / "nnUNetPlans.json").read_text())
    aconf, nconf = aplans.configuration(CONFIGURATION), nplans["configurations"][CONFIGURATION]
    num_classes = aplans.labels.num_outputs
    arch = nconf["architecture"]
    torch.manual_seed(0)
    nets = {
        "nnunet": get_network_from_plans(
            arch["network_class_name"],
            arch["arch_kwargs"],
            arch["_kw_requires_import"],
            1,
            num_classes,
            allow_init=True,
            deep_supervision=True,
        ),
        "autoseg": build_network(aconf.architecture, 1, num_classes),
    }
    batch, patch = aconf.batch_size, list(aconf.patch_size)
    x = torch.randn(batch, 1, *patch)
    y = torch.randint(0, num_classes, (batch, 1, *patch))
    heads = aconf.architecture.n_stages - 1
    aloss = DeepSupervisionLoss(DiceCELoss(batch_dice=False), deep_supervision_weights(heads))
    weights = [1 / 2**i for i in range(heads)]
    weights[-1] = 0.0
    nloss = DeepSupervisionWrapper(
        DC_and_CE_loss(
            {"batch_dice": bool(nconf["batch_dice"]), "smooth": 1e-5, "do_bg": False, "ddp": False},
            {},
            weight_ce=1,
            weight_dice=1,
            ignore_label=None,
            dice_class=MemoryEfficientSoftDiceLoss,
        ),
        [w / sum(weights) for w in weights],
    )
    opts = {
        k: torch.optim.SGD(n.parameters(), 0.01, momentum=0.99, weight_decay=3e-5, nesterov=True)
        for k, n in nets.items()
    }
    ab_phases = ("forward", "loss_backward", "clip_step")
    times: dict[str, dict[str, list[float]]] = {k: {ph: [] for ph in ab_phases} for k in nets}
    for r in range(p["ab_rounds"]):
        for k in list(nets) if r % 2 == 0 else list(nets)[::-1]:
            net, opt = nets[k], opts[k]
            net.train()
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            out = net(x)
            t1 = time.perf_counter()
            aloss(list(out), y).backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            opt.step()
            t3 = time.perf_counter()
            for key, dt in zip(times[k], (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[k][key].append(dt)
    outs = [o.detach().requires_grad_() for o in nets["nnunet"].train()(x)]
    targets = [y[(slice(None), slice(None), *(slice(None, None, 2**i),) * len(patch))] for i in range(heads)]
    targets16 = [t.to(torch.int16) for t in targets]
    loss_times: dict[str, list[float]] = {"nnunet": [], "autoseg": []}
    values = {}
    for r in range(4 * p["ab_rounds"]):
        for k in list(loss_times) if r % 2 == 0 else list(loss_times)[::-1]:
            t0 = time.perf_counter()
            value = nloss(outs, targets16) if k == "nnunet" else aloss(outs, y)
            value.backward()
            loss_times[k].append(time.perf_counter() - t0)
            values[k] = float(value.detach())
    return {
        "threads": torch.get_num_threads(),
        "rounds": p["ab_rounds"],
        "networks": {
            k: {
                "class": type(n).__name__,
                "parameters": sum(q.numel() for q in n.parameters()),
                "parameter_tensors": len(list(n.parameters())),
                **{key: statistics.median(v[1:]) for key, v in times[k].items()},
            }
            for k, n in nets.items()
        },
        "loss_forward_backward_s": {k: statistics.median(v[1:]) for k, v in loss_times.items()},
        "loss_values": values,
    }


# --------------------------------------------------------------------------------------
# parent: prepare, run the workers interleaved, summarize
# --------------------------------------------------------------------------------------
def nnunet_name(dataset: Path) -> tuple[int, str]:
    import re

    m = re.match(r"^Dataset(\d{3})_(.+)$", dataset.name)
    if m:
        return int(m.group(1)), dataset.name
    base = re.sub(r"[^A-Za-z0-9]+", "", dataset.name) or "Data"
    return 999, f"Dataset999_{base}"


def autoseg_exe() -> list[str]:
    for cand in (Path(sys.executable).parent / "autoseg", shutil.which("autoseg")):
        if cand and Path(cand).exists():
            return [str(cand)]
    return [sys.executable, "-m", "autoseg"]


def prepare(args: argparse.Namespace, dataset: Path, prep: Path) -> dict[str, Any]:
    """Plan + preprocess with both tools into ``prep`` (skipped for a tool whose output is there)."""
    did, name = nnunet_name(dataset)
    paths = {
        "autoseg_preprocessed": prep / "autoseg_preprocessed",
        "nnUNet_raw": prep / "nnUNet_raw",
        "nnUNet_preprocessed": prep / "nnUNet_preprocessed",
        "nnunet_name": name,
    }
    w = str(args.plan_workers)
    if not list(paths["autoseg_preprocessed"].glob("*/default/plans.json")):
        paths["autoseg_preprocessed"].mkdir(parents=True, exist_ok=True)
        cmd = [*autoseg_exe(), "plan", str(dataset), "-c", CONFIGURATION, "--num-workers", w]
        env = dict(os.environ, AUTOSEG_PREPROCESSED=str(paths["autoseg_preprocessed"]))
        _run_logged(cmd, env, prep / "autoseg_plan.log", "autoseg plan")
    if (
        getattr(args, "with_nnunet", True)
        and not (paths["nnUNet_preprocessed"] / name / "nnUNetPlans.json").is_file()
    ):
        paths["nnUNet_raw"].mkdir(parents=True, exist_ok=True)
        paths["nnUNet_preprocessed"].mkdir(parents=True, exist_ok=True)
        link = paths["nnUNet_raw"] / name
        if not link.exists():
            link.symlink_to(dataset, target_is_directory=True)
        exe = Path(args.nnunet_venv) / "bin" / "nnUNetv2_plan_and_preprocess"
        cmd = [str(exe), "-d", str(did), "-c", CONFIGURATION, "-np", w, "-npfp", w, "--no_pbar"]
        _run_logged(cmd, nnunet_env(paths, prep / "nnUNet_results"), prep / "nnunet_plan.log", "nnU-Net plan")
    return {k: str(v) for k, v in paths.items()}


def nnunet_env(paths: dict[str, Any], results: Path) -> dict[str, str]:
    return dict(
        os.environ,
        nnUNet_raw=str(paths["nnUNet_raw"]),
        nnUNet_preprocessed=str(paths["nnUNet_preprocessed"]),
        nnUNet_results=str(results),
        nnUNet_compile="false",
        nnUNet_n_proc_DA="1",
    )


def _run_logged(cmd: list[str], env: dict[str, str], log: Path, what: str) -> float:
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        rc = subprocess.call(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"{what} failed (rc {rc}); last lines of {log}:\n{tail}")
    print(f"{what}: {dt:.1f}s ({log})", flush=True)
    return dt


def run_worker(tool: str, args: argparse.Namespace, paths: dict[str, str], workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    params = {
        "threads": args.threads,
        "iterations": args.iterations,
        "val_iterations": args.val_iterations,
        "step_iterations": args.step_iterations,
        "preprocessed": paths["autoseg_preprocessed"],
        "results": str(workdir / "results"),
        "nnunet_preprocessed": paths["nnUNet_preprocessed"],
        "nnunet_name": paths["nnunet_name"],
        "nnunet_venv": str(Path(args.nnunet_venv).resolve()),
        "ab_rounds": args.ab_rounds,
        "precision": {v: k for k, v in TOOL_OF.items()}.get(tool, "default"),
    }
    result_file = workdir / "result.json"
    if tool == "nnunet":
        python = str(Path(args.nnunet_venv) / "bin" / "python")
        env = nnunet_env(paths, workdir / "nnUNet_results")
    else:
        python, env = sys.executable, dict(os.environ)
    worker = "autoseg" if tool.startswith("autoseg") else tool
    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, "--params", json.dumps(params)]
    cmd += ["--result", str(result_file)]
    t0 = time.perf_counter()
    _run_logged(cmd, env, workdir / f"{tool}.log", f"{tool} run")
    res = json.loads(result_file.read_text())
    res["process_wall_s"] = time.perf_counter() - t0
    res["log"] = str(workdir / f"{tool}.log")
    return res


def median_of(steps: list[dict[str, float]], key: str, skip: int) -> float:
    vals = [s[key] for s in steps[skip:] if key in s]
    return statistics.median(vals) if vals else float("nan")


def summarize_run(res: dict[str, Any], warmup: int) -> dict[str, Any]:
    tr, so = res["train_steps"], res["step_only"]
    measured = [s for s in tr[warmup:] if "iteration" in s]
    it = median_of(tr, "iteration", warmup)
    out = {
        "iteration_s": it,
        "samples_per_s": res["batch_size"] / it,
        "data_share": sum(s["data"] for s in measured) / sum(s["iteration"] for s in measured),
        "step_only_s": median_of(so, "compute", 1),
        "n_measured": len(measured),
    }
    for ph in PHASES:
        out[f"train_{ph}_s"] = median_of(tr, ph, warmup)
        if ph != "data":
            out[f"step_only_{ph}_s"] = median_of(so, ph, 1)
    return out


def fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_training(
    args: argparse.Namespace, dataset: Path, tools: list[str], runs: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Print the summary table of the training runs; return the medians per tool and the ratios."""
    summary: dict[str, dict[str, float]] = {}
    for tool in tools:
        mine = [r["summary"] for r in runs if r["tool"] == tool]
        summary[tool] = {k: statistics.median(m[k] for m in mine) for k in mine[0]}
    ratios: dict[str, dict[str, float]] = {}
    for tool in tools if "nnunet" in tools else []:
        if tool == "nnunet":
            continue
        a, n = summary[tool], summary["nnunet"]
        ratios[tool] = {k: a[k] / n[k] for k in a if k.endswith("_s") and n[k] > 0}
        ratios[tool]["samples_per_s"] = a["samples_per_s"] / n["samples_per_s"]

    first = {r["tool"]: r for r in runs}
    print(
        f"\n{dataset.name}, {CONFIGURATION}, fold 0; {args.iterations} iterations (median of iterations "
        f">= {args.warmup}), {args.repeat} run(s) per tool, interleaved; torch threads "
        + ", ".join(f"{t} {first[t]['threads_seen']}" for t in tools)
    )
    for t in tools:
        r = first[t]
        print(
            f"  {t}: {r['network']} ({r['parameters'] / 1e6:.2f} M parameters), input "
            f"{r['info'].get('input_shape')}, {r['train_cases']} training cases, {r['versions']}"
        )
    rows = [["tool", "precision", "s/iteration", "samples/s", "data wait", "step only s/it", *PHASES[1:]]]
    for t in tools:
        s = summary[t]
        rows.append(
            [
                t,
                str(first[t].get("precision", "")),
                f"{s['iteration_s']:.2f}",
                f"{s['samples_per_s']:.2f}",
                f"{100 * s['data_share']:.0f}%",
                f"{s['step_only_s']:.2f}",
                *(f"{s[f'step_only_{ph}_s']:.3f}" for ph in PHASES[1:]),
            ]
        )
    for tool, ratio in ratios.items():
        rows.append(
            [
                f"{tool}/nnU-Net",
                "",
                f"{ratio['iteration_s']:.2f}",
                f"{ratio['samples_per_s']:.2f}",
                "",
                f"{ratio['step_only_s']:.2f}",
                *(f"{ratio[f'step_only_{ph}_s']:.2f}" for ph in PHASES[1:]),
            ]
        )
    print(fmt_table(rows))
    print("(forward .. optimizer: medians of the step-only phases in s; backward includes grad clipping)")

    return summary, ratios


def print_ab(ab: dict[str, Any]) -> None:
    nets = ab["networks"]
    rows = [["network (same loss)", "parameters", "tensors", "forward", "loss+backward", "clip+SGD"]]
    for k, v in nets.items():
        rows.append(
            [
                f"{k} {v['class']}",
                str(v["parameters"]),
                str(v["parameter_tensors"]),
                f"{v['forward']:.3f}",
                f"{v['loss_backward']:.3f}",
                f"{v['clip_step']:.3f}",
            ]
        )
    a, n = nets["autoseg"], nets["nnunet"]
    ratios = (f"{a[k] / n[k]:.2f}" for k in ("forward", "loss_backward", "clip_step"))
    rows.append(["autoseg/nnU-Net", "", "", *ratios])
    print(fmt_table(rows))
    lt = ab["loss_forward_backward_s"]
    print(
        f"loss forward+backward on the same outputs: nnU-Net {1000 * lt['nnunet']:.1f} ms, autoseg "
        f"{1000 * lt['autoseg']:.1f} ms (values {ab['loss_values']['nnunet']:.4f} / "
        f"{ab['loss_values']['autoseg']:.4f}: autoseg = nnU-Net + 1); medians in s, {ab['threads']} threads"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--iterations", type=int, default=12, help="training iterations in the one epoch")
    ap.add_argument("--val-iterations", type=int, default=2)
    ap.add_argument("--step-iterations", type=int, default=6, help="steps on one fixed batch (1st dropped)")
    ap.add_argument("--warmup", type=int, default=2, help="iterations left out of the medians")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both tools")
    ap.add_argument("--plan-workers", type=int, default=2)
    ap.add_argument("--only", choices=("both", "autoseg", "nnunet", "ab"), default="both")
    ap.add_argument(
        "--precision",
        choices=("all", "default", "bf16", "fp32"),
        default="all",
        help="autoseg's runs: its default (row autoseg: bf16 autocast where the CPU has bf16 in hardware, "
        "else float32), bf16 autocast forced (autoseg-bf16), float32 (autoseg-fp32), or all three; nnU-Net "
        "trains in float32 on the CPU (it autocasts on CUDA only)",
    )
    ap.add_argument(
        "--ab-rounds",
        type=int,
        default=6,
        help="rounds of the in-process network/loss A/B after the training runs (0: skip)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "work" / "bench_train")
    ap.add_argument("--json-out", type=Path, default=None, help="default: <out>/bench_train.json")
    ap.add_argument("--prep-dir", type=Path, default=None, help="reuse/keep the preprocessed data here")
    ap.add_argument("--nnunet-venv", default=str(DEFAULT_NNUNET_VENV))
    ap.add_argument("--keep", action="store_true", help="keep the run folders (logs, checkpoints)")
    ap.add_argument("--worker", choices=("autoseg", "nnunet", "ab"), help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        fn = {"autoseg": worker_autoseg, "nnunet": worker_nnunet, "ab": worker_ab}[args.worker]
        res = fn(json.loads(args.params))
        args.result.write_text(json.dumps(res, indent=1))
        return 0

    dataset = args.dataset.resolve()
    if not (dataset / "dataset.json").is_file():
        sys.exit(f"{dataset}/dataset.json not found")
    if args.warmup >= args.iterations:
        sys.exit("--iterations must exceed --warmup")
    mine = list(TOOL_OF.values()) if args.precision == "all" else [TOOL_OF[args.precision]]
    tools = {"both": ["nnunet", *mine], "ab": [], "autoseg": mine}.get(args.only, [args.only])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out.resolve() / f"train_{stamp}"
    out.mkdir(parents=True)
    prep = args.prep_dir.resolve() if args.prep_dir else out / "prep"
    prep.mkdir(parents=True, exist_ok=True)
    args.with_nnunet = "nnunet" in tools or args.ab_rounds > 0  # nnU-Net's plans are needed then
    paths = prepare(args, dataset, prep)

    runs: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for tool in tools if rep % 2 == 0 else tools[::-1]:
            print(f"[rep {rep}] {tool} ...", flush=True)
            res = run_worker(tool, args, paths, out / f"{tool}_rep{rep}")
            res["repeat"] = rep
            res["summary"] = s = summarize_run(res, args.warmup)
            res["threads_seen"] = sorted({x["threads"] for x in res["train_steps"] + res["step_only"]})
            print(
                f"[rep {rep}] {tool}: {s['iteration_s']:.2f} s/it ({s['samples_per_s']:.2f} samples/s), "
                f"data {100 * s['data_share']:.0f}%, step alone {s['step_only_s']:.2f} s, "
                f"threads {res['threads_seen']}, input {res['info'].get('input_shape')}, "
                f"process {res['process_wall_s']:.0f}s",
                flush=True,
            )
            runs.append(res)

    summary, ratios = report_training(args, dataset, tools, runs) if tools else ({}, {})
    ab = None
    if args.ab_rounds > 0:
        print(f"\n[ab] networks and losses in one process, {args.ab_rounds} rounds ...", flush=True)
        ab = run_worker("ab", args, paths, out / "ab")
        print_ab(ab)

    report = {
        "dataset": str(dataset),
        "configuration": CONFIGURATION,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "timestamp": stamp,
        "summary": summary,
        "ratios_autoseg_over_nnunet": ratios,
        "runs": runs,
        "ab": ab,
    }
    json_out = args.json_out or args.out.resolve() / "bench_train.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {json_out}")
    if not args.keep:
        for r in runs:
            shutil.rmtree(Path(r["log"]).parent / "results", ignore_errors=True)
            shutil.rmtree(Path(r["log"]).parent / "nnUNet_results", ignore_errors=True)
        if args.prep_dir is None:
            shutil.rmtree(prep, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
