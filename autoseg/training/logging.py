"""What a training run leaves for people: a text log, TensorBoard scalars, progress.png.

The per-epoch records also go into the checkpoint (``history``), so a resumed run draws
the whole curve.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoseg.utils.files import atomic_path

log = logging.getLogger("autoseg.train")


class RunLog:
    """Text log + TensorBoard + progress.png for one fold's folder.

    Example:
        >>> run_log = RunLog(Path("fold_0"), label_names=["anterior", "posterior"])  # doctest: +SKIP
        >>> run_log.epoch({"epoch": 0, "train_loss": 0.9, ...})  # doctest: +SKIP
    """

    def __init__(self, folder: Path, label_names: Sequence[str], tensorboard: bool = True) -> None:
        self.folder = folder
        self.label_names = list(label_names)
        folder.mkdir(parents=True, exist_ok=True)
        self.text = folder / "training_log.txt"
        self._writer: Any = None
        self._plot = True
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # a bare GPU machine (benchmarks/gpu_acceptance.py): said in the log
                self.warning("tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)")
            else:
                self._writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self._plot = False
            self.warning("matplotlib is not installed: no progress.png (pip install matplotlib)")

    def line(self, message: str, level: int = logging.INFO) -> None:
        """A timestamped line in training_log.txt (``WARNING:`` marks warnings) and in the console log."""
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        mark = "WARNING: " if level >= logging.WARNING else ""
        with self.text.open("a") as f:
            f.write(f"{stamp} {mark}{message}\n")
        log.log(level, message)

    def warning(self, message: str) -> None:
        """:meth:`line` as a warning."""
        self.line(message, logging.WARNING)

    def epoch(self, record: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        """Log one epoch's record and redraw progress.png from the whole history."""
        e = record["epoch"]
        dice = ", ".join(f"{n} {d:.4f}" for n, d in zip(self.label_names, record["pseudo_dice"], strict=True))
        peak = record.get("peak_gpu_mem_gb")
        memory = f", peak GPU memory {peak:.2f} GB" if peak is not None else ""
        self.line(
            f"epoch {e}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}, "
            f"pseudo-Dice [{dice}], EMA {record['ema_dice']:.4f}, lr {record['lr']:.5f}, "
            f"{record['epoch_time']:.1f} s ({record['data_wait'] / max(record['epoch_time'], 1e-9):.0%} "
            f"waiting for data, {record['samples_per_s']:.1f} samples/s, "
            f"{record.get('step_time', 0.0) * 1000:.0f} ms/step{memory})"
        )
        if record.get("skipped_steps"):
            self.warning(f"epoch {e}: {record['skipped_steps']} step(s) skipped for a non-finite loss")
        if self._writer is not None:
            w = self._writer
            w.add_scalar("loss/train", record["train_loss"], e)
            w.add_scalar("loss/val", record["val_loss"], e)
            w.add_scalar("lr", record["lr"], e)
            w.add_scalar("dice/ema", record["ema_dice"], e)
            for name, d in zip(self.label_names, record["pseudo_dice"], strict=True):
                w.add_scalar(f"dice/{name}", d, e)
            w.add_scalar("time/epoch_s", record["epoch_time"], e)
            w.add_scalar("time/data_wait_s", record["data_wait"], e)
            w.add_scalar("time/samples_per_s", record["samples_per_s"], e)
            w.add_scalar("time/step_s", record.get("step_time", 0.0), e)
            w.add_scalar("train/skipped_steps", record.get("skipped_steps", 0), e)
            if peak is not None:
                w.add_scalar("memory/peak_gpu_gb", peak, e)
            w.flush()
        if self._plot:
            plot_progress(self.folder / "progress.png", history, self.label_names)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def plot_progress(path: Path, history: Sequence[dict[str, Any]], label_names: Sequence[str]) -> None:
    """Three panels: losses with pseudo-Dice and its EMA; epoch time and data wait; learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(3, 1, figsize=(10, 11))
    ax = axes[0]
    ax.plot(epochs, [r["train_loss"] for r in history], "b-", label="train loss")
    ax.plot(epochs, [r["val_loss"] for r in history], "r-", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    for i, name in enumerate(label_names):
        ax2.plot(epochs, [r["pseudo_dice"][i] for r in history], ":", label=f"pseudo-Dice {name}")
    ax2.plot(epochs, [r["ema_dice"] for r in history], "g-", label="pseudo-Dice EMA")
    ax2.set_ylabel("Dice")
    ax2.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    axes[1].plot(epochs, [r["epoch_time"] for r in history], "b-", label="epoch time [s]")
    axes[1].plot(epochs, [r["data_wait"] for r in history], "r-", label="waiting for data [s]")
    axes[1].set_xlabel("epoch")
    axes[1].legend()
    axes[2].plot(epochs, [r["lr"] for r in history], "b-", label="learning rate")
    axes[2].set_xlabel("epoch")
    axes[2].legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
