"""The SLURM launcher: one submitit job per (configuration, fold), requeued when SLURM stops it.

Each job runs ``autoseg train ...`` as a child process of submitit's job process, its output
appended to ``<fold>/launcher.log`` (submitit's own logs in ``<fold>/slurm/``). SLURM signals a job
(``USR2``) ``signal_delay_s`` before its time limit, on ``scancel --signal=USR2`` and on preemption;
submitit then calls :meth:`TrainingCall.checkpoint`, which stops the child and hands back the same
call, and requeues the job (``scontrol requeue``). A requeued job (``SLURM_RESTART_COUNT > 0``, also
after a requeue SLURM did on its own) resumes from ``checkpoint_latest.pt`` with ``--resume``,
which continues exactly (model, optimiser, RNG states, epoch).

The queue is watched with ``squeue`` (no accounting database needed) and the result files submitit
writes; a job that leaves the queue without a result failed.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from autoseg.sweep.jobs import FoldJob, fold_mean_dice

__all__ = ["SlurmConfig", "TrainingCall", "queue_states", "run_slurm"]

#: squeue states after which a job will not run again
ENDED = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "TIMEOUT", "SPECIAL_EXIT", "REVOKED",
}  # fmt: skip


@dataclass(frozen=True)
class SlurmConfig:
    """``conf/launcher/slurm.yaml``: what each job asks SLURM for (see the YAML for each key)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: float | None = 32.0
    time_min: int = 2880
    signal_delay_s: int = 120
    max_timeouts: int = 20
    poll_s: float = 5.0
    setup: tuple[str, ...] = ()
    sbatch: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], what: str = "launcher") -> SlurmConfig:
        """The config of ``data`` (the ``launcher`` group without ``name``); every problem at once."""
        valid = {f.name for f in fields(cls)}
        problems = [
            f"{what}.{k}: no such key (valid: {', '.join(sorted(valid))})" for k in data if k not in valid
        ]
        values = {k: v for k, v in data.items() if k in valid}
        for key in ("gpus_per_job", "cpus_per_job", "time_min", "signal_delay_s", "max_timeouts"):
            value = values.get(key, getattr(cls, key))
            least = 0 if key in ("gpus_per_job", "signal_delay_s", "max_timeouts") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                problems.append(f"{what}.{key}={value!r}: give a whole number >= {least}")
        mem = values.get("mem_gb")
        if mem is not None and (not isinstance(mem, int | float) or mem <= 0):
            problems.append(f"{what}.mem_gb={mem!r}: give a positive number of GB, or null for the default")
        if not isinstance(values.get("poll_s", 1.0), int | float) or values.get("poll_s", 1.0) <= 0:
            problems.append(f"{what}.poll_s={values.get('poll_s')!r}: give a positive number of seconds")
        if problems:
            raise ValueError("; ".join(problems))
        values["setup"] = tuple(str(line) for line in values.get("setup") or ())
        values["sbatch"] = dict(values.get("sbatch") or {})
        return cls(**values)

    def executor_parameters(self, job_name: str) -> dict[str, Any]:
        """Keyword arguments of ``submitit.SlurmExecutor.update_parameters`` for one job."""
        params: dict[str, Any] = {
            "job_name": job_name,
            "time": self.time_min,
            "cpus_per_task": self.cpus_per_job,
            "ntasks_per_node": 1,
            "signal_delay_s": self.signal_delay_s,
            "stderr_to_stdout": True,
            "setup": list(self.setup),
            "additional_parameters": dict(self.sbatch),
        }
        optional = {"partition": self.partition, "account": self.account, "qos": self.qos}
        params.update({k: v for k, v in optional.items() if v})
        if self.constraint:
            params["constraint"] = self.constraint
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.mem_gb is not None:
            params["mem"] = f"{max(1, round(self.mem_gb * 1024))}MB"
        return params


def _ignore_usr2() -> None:
    """In the child before exec: ignore USR2 (the disposition survives exec), so that the child
    outlives the signal until :meth:`TrainingCall.checkpoint` stops it."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class TrainingCall:
    """What a SLURM job runs: ``autoseg ARGV`` as a child process; checkpointable by submitit.

    Args:
        argv: the ``autoseg`` arguments (``train DATASET CONFIG FOLD ... --device D``).
        output: the fold folder (``launcher.log`` there; ``checkpoint_latest.pt`` read from there).
        env: environment variables the child gets on top of the job's.
    """

    def __init__(self, argv: Sequence[str], output: Path, env: Mapping[str, str]) -> None:
        self.argv, self.output, self.env = list(argv), Path(output), dict(env)
        self._process: subprocess.Popen | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"argv": self.argv, "output": self.output, "env": self.env}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["argv"], state["output"], state["env"])  # type: ignore[misc]

    def command(self) -> list[str]:
        """The child's argv: ``--resume`` added when SLURM restarted this job and a checkpoint exists."""
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        latest = self.output / "checkpoint_latest.pt"
        resume = restarts > 0 and latest.is_file() and "--resume" not in self.argv
        return [sys.executable, "-m", "autoseg", *self.argv, *(["--resume"] if resume else [])]

    def __call__(self) -> int:
        """Run the training to its end; a non-zero exit raises (submitit records it as the job's error)."""
        command = self.command()
        self.output.mkdir(parents=True, exist_ok=True)
        restarts = os.environ.get("SLURM_RESTART_COUNT") or "0"
        with (self.output / "launcher.log").open("a") as log:
            log.write(
                f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} SLURM job {os.environ.get('SLURM_JOB_ID')} "
                f"(restart {restarts}) on {os.uname().nodename}: autoseg {' '.join(command[3:])}\n"
            )
            log.flush()
            self._process = subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_ignore_usr2,  # SLURM signals the whole step: USR2 is for submitit, here
            )
            try:
                code = self._process.wait()
            except subprocess.CalledProcessError as err:  # raised by submitit's USR2 handler in here
                if list(err.cmd[:2]) == ["scontrol", "requeue"] and err.returncode == -signal.SIGTERM:
                    # the requeue went through: SLURM ended this run (and scontrol) to restart it
                    raise SystemExit(-1) from err
                raise
        if code == -signal.SIGTERM:
            time.sleep(60)  # SLURM is stopping the job: its SIGKILL comes first, and no result is written
        if code != 0:
            raise RuntimeError(f"autoseg exited with code {code}: see {self.output / 'launcher.log'}")
        return code

    def checkpoint(self) -> Any:
        """Called by submitit on USR2 (time limit, preemption): stop the child, requeue this call.

        The training checkpoints every epoch atomically (an interrupted write leaves the previous
        file), so the requeued job resumes from the last finished epoch (:meth:`command` adds
        ``--resume``).
        """
        import submitit

        # Only signal the child: this handler interrupted Popen.wait(), which holds the Popen's lock,
        # so waiting here would deadlock. The requeue that follows ends the job's processes anyway.
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGTERM)
        return submitit.helpers.DelayedSubmission(TrainingCall(self.argv, self.output, self.env))


def queue_states(job_ids: Sequence[str]) -> dict[str, str]:
    """``{job id: state}`` of those of ``job_ids`` that ``squeue`` still lists (this user's jobs)."""
    command = ["squeue", "--noheader", "--states=all", "--user", getpass.getuser(), "--format=%i|%T"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise RuntimeError(f"squeue failed ({err}); is SLURM reachable from here (SLURM_CONF)?") from err
    states = dict(line.split("|", 1) for line in out.split() if "|" in line)
    return {j: states[j] for j in job_ids if j in states}


@dataclass
class _Submitted:
    job: FoldJob
    handle: Any  # submitit.Job
    start: float
    gone_since: float | None = None


def _submit(job: FoldJob, config: SlurmConfig, name: str) -> _Submitted:
    """Submit ``job`` through submitit (its files in ``<fold>/slurm``)."""
    import submitit

    device = "cuda" if config.gpus_per_job else "cpu"
    env = {} if config.gpus_per_job else {"CUDA_VISIBLE_DEVICES": ""}
    env["OMP_NUM_THREADS"] = str(config.cpus_per_job)
    executor = submitit.SlurmExecutor(
        folder=job.output / "slurm", max_num_timeout=config.max_timeouts, python=sys.executable
    )
    executor.update_parameters(**config.executor_parameters(name))
    job.output.mkdir(parents=True, exist_ok=True)
    handle = executor.submit(TrainingCall([*job.argv, "--device", device], job.output, env))
    job.slot = f"slurm {handle.job_id}"
    print(
        f"submitted {job.configuration} fold {job.fold} as SLURM job {handle.job_id}; "
        f"log {job.output / 'launcher.log'}",
        flush=True,
    )
    return _Submitted(job, handle, time.perf_counter())


def _outcome(handle: Any, state: str | None) -> str | None:
    """None when the job succeeded, else the last line of its error (or the state SLURM left it in)."""
    from submitit.core.utils import pickle_load

    if not handle.paths.result_pickle.exists():
        return f"{state or 'left the queue'} without a result; see {handle.paths.stdout}"
    outcome, payload = pickle_load(handle.paths.result_pickle)
    if outcome == "success":
        return None
    lines = str(payload).strip().splitlines()
    return lines[-1] if lines else "an error without a message"


def _finish(entry: _Submitted, state: str | None) -> None:
    """Record how a job ended."""
    job = entry.job
    job.seconds = time.perf_counter() - entry.start
    error = _outcome(entry.handle, state)
    job.exit_code = 0 if error is None else 1
    job.mean_dice = fold_mean_dice(job.output) if error is None else None
    verdict = "done" if error is None else f"FAILED ({error})"
    print(f"{verdict}: {job.configuration} fold {job.fold} after {job.seconds:.0f} s", flush=True)


def run_slurm(jobs: Sequence[FoldJob], config: SlurmConfig, name: str = "autoseg") -> None:
    """Submit every job, wait until each has a result or has left the queue, record how each ended.

    Interrupting the wait (Ctrl-C, SIGTERM) cancels the jobs still queued or running.
    """
    active = [_submit(job, config, f"{name}-{job.configuration}-fold{job.fold}") for job in jobs]
    grace_s = 30.0  # a job gone from the queue may still be writing its result file, or be requeued
    try:
        while active:
            time.sleep(config.poll_s)
            states = queue_states([a.handle.job_id for a in active])
            for entry in list(active):
                state = states.get(entry.handle.job_id)
                if _outcome(entry.handle, state) is None:  # success is final
                    active.remove(entry)
                    _finish(entry, state)
                elif state is None or state in ENDED:
                    # an error counts once the job stays out of the queue: a requeued job passes through
                    # such states, and its run before the requeue may have left an error (submitit's
                    # `scontrol requeue` can be killed by the requeue it asked for)
                    entry.gone_since = entry.gone_since or time.perf_counter()
                    if time.perf_counter() - entry.gone_since > grace_s:
                        active.remove(entry)
                        _finish(entry, state)
                else:
                    entry.gone_since = None
    except (KeyboardInterrupt, SystemExit):
        for entry in active:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                entry.handle.cancel(check=False)
        raise
