"""Which configurations, folds and post-processing a prediction uses: decided in one place.

``autoseg predict`` and the container's entrypoint both call :func:`choose`, so a model predicts the
same way from the command line and from its container: the configurations asked for (default: the
selection's, else the only trained one), the selection's folds and post-processing when the
configurations are the selected ones, and its temperature for saved probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoseg.inference.model import ModelFolder, TrainedConfiguration, fold_names
from autoseg.postprocessing.components import PostprocessingSpec

__all__ = ["Choice", "choose"]


@dataclass(frozen=True)
class Choice:
    """What a prediction runs.

    Attributes:
        trained: the configurations, in ensemble order.
        folds: per configuration, the folds whose networks are averaged.
        postprocessing: the selection's post-processing, or None.
        temperature: find-best's temperature for saved probabilities, or None.
        uses_selection: whether the configurations are the selected ones.
    """

    trained: tuple[TrainedConfiguration, ...]
    folds: tuple[tuple[str, ...], ...]
    postprocessing: PostprocessingSpec | None
    temperature: float | None
    uses_selection: bool

    @property
    def configurations(self) -> list[str]:
        return [t.name for t in self.trained]


def choose(
    model: ModelFolder,
    configurations: Sequence[str] | None = None,
    folds: Sequence[str] | None = None,
    postprocessing: bool = True,
) -> Choice:
    """Decide the configurations, folds and post-processing of a prediction with ``model``.

    Args:
        configurations: asked for (``-c``); default: the selection's, else the only trained one.
        folds: asked for (``-f``); default: the selection's when it applies, else every trained fold.
        postprocessing: apply the selection's post-processing when it applies (``--no-postprocessing``).

    Raises:
        ValueError: several configurations are trained, none asked for and no selection.
        FileNotFoundError: a configuration or fold asked for is not trained.
    """
    selection = model.selection
    if configurations:
        names = list(configurations)
    elif selection is not None:
        names = list(selection.configurations)
    else:
        names = model.configurations()
        if len(names) != 1:
            raise ValueError(
                f"{model.root}: choose a configuration with -c ({', '.join(names) or 'none trained'}), "
                "or run `autoseg find-best` to select one"
            )
    uses = selection is not None and selection.selects(names)
    if uses and selection is not None:
        names = list(selection.configurations)  # the selection's order: the same sums as find-best's
        folds = folds or list(selection.folds) or None
    trained = tuple(model.configuration(name) for name in names)
    spec = None
    if uses and postprocessing and selection is not None and selection.postprocessing:
        spec = PostprocessingSpec.from_dict(selection.postprocessing)
    return Choice(
        trained=trained,
        folds=tuple(tuple(fold_names(folds, t.folds, str(t.folder))) for t in trained),
        postprocessing=spec,
        temperature=selection.temperature(names) if selection is not None else None,
        uses_selection=uses,
    )
