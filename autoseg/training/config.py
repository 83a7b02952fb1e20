"""Trainer settings: frozen dataclasses filled from conf/trainer/<name>.yaml, conf/augment/<name>.yaml
and ``key=value`` overrides (``trainer.loss.weight_ce=0.5``, ``augment.p_rotation=0.3``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from autoseg.data.augment import AugmentConfig
from autoseg.utils.dataclasses import from_mapping
from autoseg.utils.lookup import unknown_name

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class LossConfig:
    """Dice + cross-entropy with deep supervision (nnU-Net's ``DC_and_CE_loss``).

    Attributes:
        weight_ce, weight_dice: weights of the two terms (nnU-Net: 1 and 1).
        smooth: the soft Dice's smoothing term (nnU-Net: 1e-5).
        deep_supervision: train every decoder resolution (weights 1/2**i, the lowest 0); False
            trains the full-resolution output alone.
    """

    weight_ce: float = 1.0
    weight_dice: float = 1.0
    smooth: float = 1e-5
    deep_supervision: bool = True

    def __post_init__(self) -> None:
        if self.weight_ce < 0 or self.weight_dice < 0 or self.weight_ce + self.weight_dice == 0:
            raise ValueError(
                f"trainer.loss: weight_ce={self.weight_ce}, weight_dice={self.weight_dice} must be >= 0 "
                "and not both 0"
            )
        if self.smooth < 0:
            raise ValueError(f"trainer.loss.smooth={self.smooth} must be >= 0")


@dataclass(frozen=True)
class OptimizerConfig:
    """Which optimiser (``lr``, ``momentum`` and ``weight_decay`` are the trainer's own keys).

    Attributes:
        name: ``sgd`` (nnU-Net's, with Nesterov momentum), ``adam`` or ``adamw``.
        nesterov: Nesterov momentum for SGD.
        betas: Adam's betas (``momentum`` is then not used).
    """

    name: str = "sgd"
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"trainer.optimizer.name: {unknown_name('optimizer', self.name, OPTIMIZERS)}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"trainer.optimizer.betas={self.betas} must be two values in [0, 1)")


AMP_DTYPES = ("auto", "bfloat16", "float16")
LOGGERS = ("tensorboard", "mlflow")
AUGMENT_ON = ("auto", "workers", "device")


@dataclass(frozen=True)
class TrainerConfig:
    """Every knob of a training run (nnU-Net's defaults; reference/nnunet-v2-facts.md §5).

    Attributes:
        epochs: epochs of ``iterations_per_epoch`` training steps each.
        val_iterations: validation batches per epoch (pseudo-Dice).
        lr, momentum, weight_decay: SGD with Nesterov momentum.
        poly_exponent: lr(epoch) = lr * (1 - epoch / epochs) ** poly_exponent
            (:mod:`autoseg.training.schedule`; after a warm-up, the decay runs over the epochs after it).
        warmup_epochs: linear warm-up of the lr over the first epochs (0: none, nnU-Net's schedule;
            the ``finetune`` preset warms up).
        freeze_encoder_epochs: keep the encoder's weights fixed for the first epochs (0: never), so a
            fine-tuned network's new heads settle before the pretrained features move.
        grad_clip: gradient norm clipping.
        oversample_foreground: share of each batch forced to contain foreground.
        num_workers: data-loading processes; None picks min(cores - 1, 12).
        amp: mixed precision (autocast) on any device.
        amp_dtype: ``auto`` (bf16 on the CPU and on GPUs that support it, else fp16 with a grad
            scaler), ``bfloat16``, or ``float16`` (always with a grad scaler, also on the CPU).
        compile: torch.compile the network (on the CPU too; inductor needs a C compiler there).
        max_nonfinite_steps: a step whose loss is NaN/inf is skipped (counted and logged); this many
            in a row stop the run with an error naming the epoch and iteration.
        augment_on: where training augmentation runs: ``workers`` (the data-loading processes),
            ``device`` (``Augmenter.apply_batch`` on the training device), or ``auto`` (workers; on
            CUDA, the device from epoch 1 on when the data wait of epoch 0 exceeded 5 % of the
            step time).
        seed: seeds the network's initialisation and every batch (batch k from (seed, k)).
        deterministic: deterministic algorithms (CPU runs then repeat exactly).
        early_stop_patience: stop after this many epochs without a better EMA pseudo-Dice.
        ema_momentum: ema = m * ema + (1 - m) * pseudo-Dice.
        final_validation: sliding-window prediction of the validation cases at the end.
        tta_mirroring: mirror test-time augmentation in the final validation.
        step_size: sliding-window step as a fraction of the patch.
        save_probabilities: write the validation probabilities (needed to ensemble configurations).
        validation_png: draw each validation case's prediction over its image (a QC picture).
        patch_size, batch_size: override the plan's values (None keeps the plan's).
        augment: the augmentation's probabilities and ranges, and extra TorchIO transforms
            (conf/augment/*.yaml, the ``augment`` group: ``augment=mr-artefacts``).
        loss: :class:`LossConfig`; optimizer: :class:`OptimizerConfig`.
        loggers: where the per-epoch numbers go besides training_log.txt and progress.png:
            ``tensorboard`` and/or ``mlflow`` (:mod:`autoseg.training.tracking`).
        mlflow_tracking_uri: the MLflow store (None: ``MLFLOW_TRACKING_URI``, else
            ``<results>/mlruns``).
        mlflow_experiment: the MLflow experiment (None: the dataset's name); a sweep sets one
            name for all its runs.
    """

    name: str = "default"
    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations: int = 50
    lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    warmup_epochs: int = 0
    freeze_encoder_epochs: int = 0
    grad_clip: float = 12.0
    oversample_foreground: float = 0.33
    num_workers: int | None = None
    amp: bool = True
    amp_dtype: str = "auto"
    compile: bool = False
    max_nonfinite_steps: int = 10
    augment_on: str = "auto"
    seed: int = 12345
    deterministic: bool = False
    early_stop_patience: int | None = None
    ema_momentum: float = 0.9
    final_validation: bool = True
    tta_mirroring: bool = True
    save_probabilities: bool = True
    validation_png: bool = False
    step_size: float = 0.5
    patch_size: tuple[int, ...] | None = None
    batch_size: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loggers: tuple[str, ...] = ("tensorboard",)
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None

    def __post_init__(self) -> None:
        problems = []
        unknown = [name for name in self.loggers if name not in LOGGERS]
        if unknown or len(set(self.loggers)) != len(self.loggers):
            problems.append(f"loggers={list(self.loggers)} must be distinct names among {', '.join(LOGGERS)}")
        for key in ("epochs", "iterations_per_epoch"):
            if getattr(self, key) < 1:
                problems.append(f"{key}={getattr(self, key)} must be >= 1")
        if not 0 <= self.warmup_epochs < self.epochs:
            problems.append(f"warmup_epochs={self.warmup_epochs} must be >= 0 and below epochs={self.epochs}")
        if not 0 <= self.freeze_encoder_epochs <= self.epochs:
            problems.append(
                f"freeze_encoder_epochs={self.freeze_encoder_epochs} must be in [0, epochs={self.epochs}]"
            )
        if self.lr < 0:
            problems.append(f"lr={self.lr} must be >= 0")
        if self.val_iterations < 0:
            problems.append(f"val_iterations={self.val_iterations} must be >= 0")
        if not 0 <= self.oversample_foreground <= 1:
            problems.append(f"oversample_foreground={self.oversample_foreground} must be in [0, 1]")
        if not 0 < self.step_size <= 1:
            problems.append(f"step_size={self.step_size} must be in (0, 1]")
        if self.amp_dtype not in AMP_DTYPES:
            problems.append(f"amp_dtype={self.amp_dtype!r} must be one of {', '.join(AMP_DTYPES)}")
        if self.augment_on not in AUGMENT_ON:
            problems.append(f"augment_on={self.augment_on!r} must be one of {', '.join(AUGMENT_ON)}")
        if self.max_nonfinite_steps < 1:
            problems.append(f"max_nonfinite_steps={self.max_nonfinite_steps} must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} must be >= 1")
        if problems:
            raise ValueError("trainer config: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], augment: Mapping[str, Any] | None = None) -> TrainerConfig:
        """Build from (hydra) mappings: the trainer's, and the ``augment`` group's (or ``data["augment"]``).

        An unknown key names the nearest valid one; invalid values are listed with the fix.
        """
        flat = dict(data)
        parts: dict[str, Any] = {}
        augment = augment if augment is not None else flat.pop("augment", None)
        flat.pop("augment", None)
        if augment is not None:
            parts["augment"] = from_mapping(AugmentConfig, _augment_fields(augment), "augment")
        if "loss" in flat:
            parts["loss"] = from_mapping(LossConfig, flat.pop("loss") or {}, "trainer.loss")
        if "optimizer" in flat:
            parts["optimizer"] = from_mapping(
                OptimizerConfig, flat.pop("optimizer") or {}, "trainer.optimizer"
            )
        return from_mapping(cls, {**flat, **parts}, "trainer config")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), as run.json and the checkpoints record them."""
        return _plain(asdict(self))


def _augment_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out.pop("name", None)  # the preset's name, recorded in the resolved config
    if "extra" in out:
        out["extra"] = tuple(dict(e) if isinstance(e, Mapping) else e for e in out["extra"] or ())
    return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
