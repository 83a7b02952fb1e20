"""Which fold of which configuration a run trains: its inputs and its output folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from autoseg.contracts.plans import ConfigurationPlan, Plans

__all__ = ["FoldSpec", "fold_cases"]


@dataclass(frozen=True)
class FoldSpec:
    """Which fold of which configuration: the inputs and the output folder of a run."""

    preprocessed: Path  # <preprocessed>/<Dataset>
    plans: Plans
    configuration: str
    fold: int | str  # 0..k-1, or "all"
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    output: Path  # .../<Dataset>/<plans>/<config>/fold_<k>
    raw_root: Path | None = None  # the raw dataset: validation is scored against its labels when set

    def trained_with(self, patch_size: Sequence[int] | None) -> FoldSpec:
        """This fold with the trainer's ``patch_size`` override written into its plans (None: the plan's)."""
        if patch_size is None:
            return self
        return replace(
            self, plans=self.plans.with_patch_size(self.configuration, patch_size, "trainer.patch_size")
        )

    @property
    def conf(self) -> ConfigurationPlan:
        """The configuration's plan."""
        return self.plans.configuration(self.configuration)

    @property
    def data_folder(self) -> Path:
        return self.preprocessed / self.plans.plans_name / self.conf.data_identifier


def fold_cases(
    splits: list[dict[str, list[str]]], fold: int | str, all_cases: list[str]
) -> tuple[list, list]:
    """Training and validation cases of ``fold``; ``"all"`` trains and validates on every case."""
    if fold == "all":
        return sorted(all_cases), sorted(all_cases)
    k = int(fold)
    if not 0 <= k < len(splits):
        raise ValueError(
            f"fold {fold} does not exist: splits.json has folds 0..{len(splits) - 1} (or use 'all')"
        )
    return list(splits[k]["train"]), list(splits[k]["val"])
