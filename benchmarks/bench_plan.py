#!/usr/bin/env python
"""Time ``autoseg plan`` against ``nnUNetv2_plan_and_preprocess`` on the same raw dataset.

Both tools run fingerprint extraction + experiment planning + preprocessing of the
3d_fullres configuration with the same number of worker processes.  For every run we
record

* wall time  (time.perf_counter around the subprocess),
* CPU time   (user+sys of all waited-for descendants, from getrusage(RUSAGE_CHILDREN)),
* peak memory of the whole process tree, sampled every ``--interval`` seconds (50 ms):
  peak of the *sum of PSS* (proportional set size: pages shared between forked workers
  are split between them, not double counted) and peak of the sum of RSS.

Memory is read from /proc: RSS from ``/proc/<pid>/statm`` (cheap) and PSS from
``/proc/<pid>/smaps_rollup`` (a page-table walk, ~1 ms per torch-sized process, so it is
skipped for samples whose RSS sum is below the PSS peak so far, which cannot raise that
peak since PSS <= RSS; and a process's PSS is re-read only when its RSS moved by more
than max(1 MiB, 0.5 %) or every 10 samples).  The tree is found through ``/proc/<pid>/task/*/children`` where
the kernel provides it, otherwise by scanning the ppid of every process in /proc.  Linux
only; needs no third-party package.  Spikes shorter than the sampling interval can be
missed.  The sampler's own CPU time is reported (``sampler_cpu_s``): on a small machine
it competes with the measured tools.

Usage::

    python benchmarks/bench_plan.py --dataset /path/to/Dataset004_Hippocampus --workers 2 \
        [--repeat 1] [--out benchmarks/work] [--json-out FILE] [--only nnunet|autoseg|both]

nnU-Net gets a temporary ``nnUNet_raw`` folder holding only a symlink
``DatasetXXX_Name -> <dataset>`` (``Dataset9NN_<name>`` when the folder is not named that
way) and fresh ``nnUNet_preprocessed`` / ``nnUNet_results`` folders; autoseg gets a fresh
``AUTOSEG_PREPROCESSED``.  Every run uses fresh output folders so that neither tool can
skip work thanks to an earlier run.  Before timing, every file of the dataset is read
once so that both tools start with the raw data in the page cache (``--no-warm-cache``
to disable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_NNUNET_VENV = HERE / ".nnunet-venv"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
DATASET_RE = re.compile(r"^Dataset(\d{3})_(.+)$")


# --------------------------------------------------------------------------------------
# process-tree memory sampling (Linux /proc)
# --------------------------------------------------------------------------------------
def _children_via_task_files(pid: int) -> list[int] | None:
    """Children of ``pid`` from /proc/<pid>/task/*/children (CONFIG_PROC_CHILDREN)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # thread exited meanwhile
            return None  # the kernel has no children files
        except OSError:
            continue
    return kids


def _ppid_map() -> dict[int, list[int]]:
    """parent pid -> child pids, by scanning /proc/*/stat."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field (2nd) is in parentheses and may contain spaces
        rest = stat[stat.rfind(b")") + 2 :].split()
        if len(rest) < 2:
            continue
        tree.setdefault(int(rest[1]), []).append(int(name))
    return tree


def _mem_available_kb() -> int | None:
    """/proc/meminfo's MemAvailable in KiB (None where unreadable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class TreeMemorySampler:
    """Samples the summed PSS/RSS of a process and all its descendants in a thread."""

    def __init__(
        self, root_pid: int, interval: float = 0.05, pss_refresh: int = 10, kill_above_kb: int | None = None
    ):
        self.root_pid = root_pid
        # a watchdog: the tree is killed (SIGKILL, by pid) when its summed RSS passes this, or when the
        # machine's MemAvailable falls under 2 GiB, so that a benchmark never swaps a shared machine
        self.kill_above_kb = kill_above_kb
        self.killed: str | None = None
        self.interval = interval
        self.peak_pss_kb = 0
        self.peak_rss_kb = 0
        self.peak_nproc = 0
        self.n_samples = 0
        self.n_pss_reads = 0  # smaps_rollup reads (one per process)
        self.pss_refresh = pss_refresh
        self._pss_cache: dict[int, tuple[int, int, int]] = {}  # pid -> (rss, pss, sample index)
        self.cpu_s = 0.0  # CPU time the sampler itself used (competes with the measured tools)
        self._use_task_children: bool | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tree_pids(self) -> list[int]:
        if self._use_task_children is not False:
            pids, todo, ok = [], [self.root_pid], True
            while todo:
                pid = todo.pop()
                pids.append(pid)
                kids = _children_via_task_files(pid)
                if kids is None:
                    ok = False
                    break
                todo.extend(kids)
            if ok:
                self._use_task_children = True
                return pids
            self._use_task_children = False
        tree = _ppid_map()
        pids, todo = [], [self.root_pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(tree.get(pid, ()))
        return pids

    @staticmethod
    def _rss_kb(pid: int) -> int:
        """Cheap RSS from /proc/<pid>/statm (no page-table walk)."""
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * PAGE_KB
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _pss_kb(pid: int) -> int:
        """PSS from /proc/<pid>/smaps_rollup (walks the page tables: ~1 ms for a torch process)."""
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass  # process gone, zombie (empty file) or not readable
        return 0

    def sample(self) -> None:
        pids = self.tree_pids()
        rss_by_pid = {pid: self._rss_kb(pid) for pid in pids}
        rss = sum(rss_by_pid.values())
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        if self.kill_above_kb is not None and self.killed is None:
            self._watchdog(rss, pids)
        self.peak_nproc = max(self.peak_nproc, len(pids))
        self.n_samples += 1
        # PSS <= RSS for every process, so a sample whose RSS sum is below the PSS peak so far
        # cannot raise that peak: skip the expensive smaps_rollup reads then.
        if rss <= self.peak_pss_kb:
            return
        # Otherwise re-read a process's PSS only when its RSS moved noticeably since its last
        # read, or every `pss_refresh` samples (its PSS also changes when processes sharing
        # its pages come and go); else reuse the cached value.
        pss = 0
        cache = {}
        for pid, r in rss_by_pid.items():
            c = self._pss_cache.get(pid)
            if c is None or abs(r - c[0]) > max(1024, r // 200) or self.n_samples - c[2] >= self.pss_refresh:
                c = (r, self._pss_kb(pid), self.n_samples)
                self.n_pss_reads += 1
            cache[pid] = c
            pss += c[1]
        self._pss_cache = cache
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def _watchdog(self, rss_kb: int, pids: list[int]) -> None:
        assert self.kill_above_kb is not None
        available = _mem_available_kb()
        if rss_kb > self.kill_above_kb:
            self.killed = f"summed RSS {rss_kb // 1024} MiB passed the limit {self.kill_above_kb // 1024} MiB"
        elif available is not None and available < 2 * 2**20:
            self.killed = (
                f"the machine's MemAvailable fell to {available // 1024} MiB (tree RSS {rss_kb // 1024} MiB)"
            )
        else:
            return
        for pid in reversed(pids):  # children first
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _run(self) -> None:
        c0 = time.thread_time()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - t0)))
        self.cpu_s = time.thread_time() - c0

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class RunResult:
    tool: str
    repeat: int
    returncode: int
    wall_s: float
    cpu_s: float
    peak_pss_mib: float
    peak_rss_mib: float
    peak_nproc: int
    n_samples: int
    n_pss_reads: int
    sampler_cpu_s: float
    workdir: str
    log: str
    cmd: list[str] = field(default_factory=list)
    killed: str | None = None  # the watchdog's reason (--kill-at-gib), with the peak before it


def timed_run(
    tool: str,
    repeat: int,
    cmd: list[str],
    env: dict[str, str],
    workdir: Path,
    interval: float,
    kill_above_gib: float | None = None,
) -> RunResult:
    log_path = workdir / f"{tool}.log"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir
        )
        limit = None if kill_above_gib is None else int(kill_above_gib * 2**20)
        with TreeMemorySampler(proc.pid, interval, kill_above_kb=limit) as sampler:
            rc = proc.wait()
        wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return RunResult(
        tool=tool,
        repeat=repeat,
        returncode=rc,
        wall_s=wall,
        cpu_s=cpu,
        peak_pss_mib=sampler.peak_pss_kb / 1024,
        peak_rss_mib=sampler.peak_rss_kb / 1024,
        peak_nproc=sampler.peak_nproc,
        n_samples=sampler.n_samples,
        n_pss_reads=sampler.n_pss_reads,
        sampler_cpu_s=sampler.cpu_s,
        workdir=str(workdir),
        log=str(log_path),
        cmd=cmd,
        killed=sampler.killed,
    )


# --------------------------------------------------------------------------------------
# the two tools
# --------------------------------------------------------------------------------------
def nnunet_name(dataset: Path, forced_id: int | None) -> tuple[int, str]:
    """(dataset id, DatasetXXX_Name) under which nnU-Net sees ``dataset``."""
    m = DATASET_RE.match(dataset.name)
    if m and forced_id is None:
        return int(m.group(1)), dataset.name
    did = forced_id if forced_id is not None else 999
    base = m.group(2) if m else re.sub(r"[^A-Za-z0-9]+", "", dataset.name) or "Data"
    return did, f"Dataset{did:03d}_{base}"


def run_nnunet(args, dataset: Path, rep: int, workdir: Path) -> RunResult:
    did, name = nnunet_name(dataset, args.nnunet_id)
    raw, pre, res = workdir / "nnUNet_raw", workdir / "nnUNet_preprocessed", workdir / "nnUNet_results"
    for d in (raw, pre, res):
        d.mkdir(parents=True)
    (raw / name).symlink_to(dataset, target_is_directory=True)
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(res))
    exe = Path(args.nnunet_venv) / "bin" / "nnUNetv2_plan_and_preprocess"
    if not exe.exists():
        sys.exit(f"{exe} not found; run benchmarks/setup_nnunet.sh first (or pass --nnunet-venv)")
    w = str(args.workers)
    cmd = [
        str(exe),
        "-d",
        str(did),
        "-c",
        "3d_fullres",
        "-np",
        w,
        "-npfp",
        w,
        "--no_pbar",
        *shlex.split(args.nnunet_extra),
    ]
    return timed_run("nnunet", rep, cmd, env, workdir, args.interval, args.kill_at_gib)


def autoseg_base_cmd(args) -> list[str]:
    if args.autoseg_cmd:
        return shlex.split(args.autoseg_cmd)
    for cand in (Path(sys.executable).parent / "autoseg", shutil.which("autoseg"), "/work/venv/bin/autoseg"):
        if cand and Path(cand).exists():
            return [str(cand)]
    return [sys.executable, "-m", "autoseg"]


def run_autoseg(args, dataset: Path, rep: int, workdir: Path) -> RunResult:
    pre = workdir / "autoseg_preprocessed"
    pre.mkdir(parents=True)
    env = dict(os.environ, AUTOSEG_PREPROCESSED=str(pre))
    cmd = [
        *autoseg_base_cmd(args),
        "plan",
        str(dataset),
        "-c",
        "3d_fullres",
        "--num-workers",
        str(args.workers),
        *shlex.split(args.autoseg_extra),
    ]
    return timed_run("autoseg", rep, cmd, env, workdir, args.interval, args.kill_at_gib)


# --------------------------------------------------------------------------------------
# nnU-Net plan summary (what the lead compares autoseg's planner against)
# --------------------------------------------------------------------------------------
def summarize_nnunet_plans(workdir: Path) -> dict | None:
    plans_files = sorted((workdir / "nnUNet_preprocessed").glob("*/nnUNetPlans.json"))
    if not plans_files:
        return None
    plans = json.loads(plans_files[0].read_text())
    out: dict = {
        "plans_file": str(plans_files[0]),
        "original_median_spacing_after_transp": plans.get("original_median_spacing_after_transp"),
        "original_median_shape_after_transp": plans.get("original_median_shape_after_transp"),
        "transpose_forward": plans.get("transpose_forward"),
        "configurations": {},
    }
    for cname, cfg in plans["configurations"].items():
        arch = cfg.get("architecture", {}).get("arch_kwargs", {})
        out["configurations"][cname] = {
            "inherits_from": cfg.get("inherits_from"),
            "data_identifier": cfg.get("data_identifier"),
            "spacing": cfg.get("spacing"),
            "median_image_size_in_voxels": cfg.get("median_image_size_in_voxels"),
            "patch_size": cfg.get("patch_size"),
            "batch_size": cfg.get("batch_size"),
            "n_stages": arch.get("n_stages"),
            "features_per_stage": arch.get("features_per_stage"),
            "strides": arch.get("strides"),
            "kernel_sizes": arch.get("kernel_sizes"),
            "normalization_schemes": cfg.get("normalization_schemes"),
            "use_mask_for_norm": cfg.get("use_mask_for_norm"),
            "network_class": cfg.get("architecture", {}).get("network_class_name"),
        }
    fp_files = sorted((workdir / "nnUNet_preprocessed").glob("*/dataset_fingerprint.json"))
    if fp_files:
        fp = json.loads(fp_files[0].read_text())
        spacings, shapes = fp["spacings"], fp["shapes_after_crop"]
        out["fingerprint"] = {
            "n_cases": len(spacings),
            "median_spacing": [statistics.median(s[i] for s in spacings) for i in range(len(spacings[0]))],
            "median_shape_after_crop": [
                statistics.median(s[i] for s in shapes) for i in range(len(shapes[0]))
            ],
            "foreground_intensity_properties_per_channel": fp.get(
                "foreground_intensity_properties_per_channel"
            ),
        }
    return out


def print_nnunet_plan(summary: dict) -> None:
    print(f"\nnnU-Net plan ({summary['plans_file']})")
    print(
        f"  median spacing (transposed) {summary['original_median_spacing_after_transp']}, "
        f"median shape {summary['original_median_shape_after_transp']}, "
        f"transpose_forward {summary['transpose_forward']}"
    )
    for cname, c in summary["configurations"].items():
        if c.get("inherits_from"):
            print(f"  {cname}: inherits from {c['inherits_from']}")
            continue
        print(f"  {cname}: spacing {c['spacing']} median size {c['median_image_size_in_voxels']}")
        print(
            f"      patch {c['patch_size']} batch {c['batch_size']} n_stages {c['n_stages']} "
            f"features {c['features_per_stage']}"
        )
        print(f"      strides {c['strides']}")
        print(f"      kernels {c['kernel_sizes']}")
        print(f"      norm {c['normalization_schemes']} use_mask_for_norm {c['use_mask_for_norm']}")
    if "3d_lowres" not in summary["configurations"]:
        print("  (no 3d_lowres configuration was created)")


# --------------------------------------------------------------------------------------
def warm_cache(dataset: Path) -> int:
    n = 0
    for p in sorted(dataset.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 22):
                    pass
            n += p.stat().st_size
    return n


def fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, type=Path, help="raw dataset folder (with dataset.json)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for both tools")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "work", help="scratch folder for the runs")
    ap.add_argument("--json-out", type=Path, default=None, help="default: <out>/bench_plan.json")
    ap.add_argument("--only", choices=("both", "autoseg", "nnunet"), default="both")
    ap.add_argument(
        "--autoseg-cmd",
        default=None,
        help="command that runs the autoseg CLI (default: autoseg next to this python, "
        "on PATH, /work/venv/bin/autoseg, else `python -m autoseg`)",
    )
    ap.add_argument("--autoseg-extra", default="", help="extra arguments appended to `autoseg plan`")
    ap.add_argument("--nnunet-venv", default=str(DEFAULT_NNUNET_VENV))
    ap.add_argument(
        "--nnunet-id",
        type=int,
        default=None,
        help="dataset id for nnU-Net (default: from DatasetXXX_ name, else 999)",
    )
    ap.add_argument("--nnunet-extra", default="", help="extra arguments for nnUNetv2_plan_and_preprocess")
    ap.add_argument("--interval", type=float, default=0.05, help="memory sampling interval (s)")
    ap.add_argument("--no-warm-cache", action="store_true")
    ap.add_argument(
        "--kill-at-gib",
        type=float,
        default=None,
        help="watchdog: kill a tool whose process tree passes this many GiB (or when the machine's "
        "MemAvailable falls under 2 GiB) and report its peak",
    )
    ap.add_argument(
        "--keep",
        choices=("last", "all", "none"),
        default="last",
        help="which run folders to keep (default: the last repeat of each tool)",
    )
    args = ap.parse_args(argv)

    dataset = args.dataset.resolve()
    if not (dataset / "dataset.json").is_file():
        sys.exit(f"{dataset}/dataset.json not found")
    tools = ["nnunet", "autoseg"] if args.only == "both" else [args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    out_root = args.out.resolve()
    json_out = args.json_out or out_root / "bench_plan.json"

    if not args.no_warm_cache:
        t0 = time.perf_counter()
        nbytes = warm_cache(dataset)
        print(f"warmed page cache: read {nbytes / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f}s")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: list[RunResult] = []
    runners = {"nnunet": run_nnunet, "autoseg": run_autoseg}
    for rep in range(args.repeat):
        # alternate the order between repeats so neither tool always runs first
        order = tools if rep % 2 == 0 else tools[::-1]
        for tool in order:
            workdir = out_root / f"plan_{stamp}_{tool}_rep{rep}"
            if workdir.exists():
                shutil.rmtree(workdir)
            workdir.mkdir(parents=True)
            print(f"[rep {rep}] running {tool} ...", flush=True)
            r = runners[tool](args, dataset, rep, workdir)
            print(
                f"[rep {rep}] {tool}: rc={r.returncode} wall={r.wall_s:.1f}s cpu={r.cpu_s:.1f}s "
                f"peakPSS={r.peak_pss_mib:.0f}MiB peakRSS={r.peak_rss_mib:.0f}MiB "
                f"procs<={r.peak_nproc} samples={r.n_samples} (smaps reads {r.n_pss_reads}, "
                f"sampler cpu {r.sampler_cpu_s:.1f}s) log {r.log}",
                flush=True,
            )
            if r.killed:
                print(f"  !! {tool} killed by the watchdog: {r.killed}")
            if r.returncode != 0:
                print(f"  !! {tool} failed; last lines of its log:")
                print("\n".join(Path(r.log).read_text(errors="replace").splitlines()[-20:]))
            results.append(r)

    nnunet_plan = None
    ok_nnunet = [r for r in results if r.tool == "nnunet" and r.returncode == 0]
    if ok_nnunet:
        nnunet_plan = summarize_nnunet_plans(Path(ok_nnunet[-1].workdir))
        if nnunet_plan:
            print_nnunet_plan(nnunet_plan)

    # summary: median over successful repeats
    summary: dict[str, dict] = {}
    for tool in tools:
        ok = [r for r in results if r.tool == tool and r.returncode == 0]
        if ok:
            summary[tool] = {
                k: statistics.median(getattr(r, k) for r in ok)
                for k in ("wall_s", "cpu_s", "peak_pss_mib", "peak_rss_mib")
            }
            summary[tool]["n_ok"] = len(ok)
    ratios = {}
    if "autoseg" in summary and "nnunet" in summary:
        ratios = {
            k: summary["autoseg"][k] / summary["nnunet"][k]
            for k in ("wall_s", "cpu_s", "peak_pss_mib", "peak_rss_mib")
            if summary["nnunet"][k] > 0
        }

    print(f"\ndataset {dataset}, workers {args.workers}, repeats {args.repeat} (medians of successful runs)")
    rows = [["tool", "wall [s]", "cpu [s]", "peak PSS [MiB]", "peak RSS [MiB]", "ok runs"]]
    for tool, s in summary.items():
        rows.append(
            [
                tool,
                f"{s['wall_s']:.1f}",
                f"{s['cpu_s']:.1f}",
                f"{s['peak_pss_mib']:.0f}",
                f"{s['peak_rss_mib']:.0f}",
                f"{s['n_ok']}/{args.repeat}",
            ]
        )
    if ratios:
        rows.append(
            ["autoseg/nnU-Net"]
            + [
                f"{ratios[k]:.2f}" if k in ratios else "-"
                for k in ("wall_s", "cpu_s", "peak_pss_mib", "peak_rss_mib")
            ]
            + [""]
        )
    if len(rows) > 1:
        print(fmt_table(rows))

    report = {
        "dataset": str(dataset),
        "workers": args.workers,
        "repeat": args.repeat,
        "interval_s": args.interval,
        "cpu_count": os.cpu_count(),
        "timestamp": stamp,
        "runs": [asdict(r) for r in results],
        "summary": summary,
        "ratios_autoseg_over_nnunet": ratios,
        "nnunet_plan": nnunet_plan,
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {json_out}")

    # clean up run folders
    if args.keep != "all":
        last = {}
        for r in results:
            last[r.tool] = r.workdir
        for r in results:
            if args.keep == "none" or r.workdir != last[r.tool]:
                shutil.rmtree(r.workdir, ignore_errors=True)

    return 0 if results and all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
