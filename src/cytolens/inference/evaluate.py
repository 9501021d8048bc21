"""Evaluating a trained model on an annotated dataset.

:func:`evaluate` scores any model: it hands the model to the evaluator registered for its task
(:func:`register_evaluator`), as prediction hands a batch to the task's predictor. Detectors (``boxes``,
``points``) run on every image and their cells are matched with the truth (:func:`evaluate_model`); patch
classifiers (``patches``) classify the truth's own patches (:func:`evaluate_classifier`). Each gives an
:class:`Evaluation`: its figures, and how to write its report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cytolens.data.annotations import Dataset
from cytolens.data.patches import image_patches
from cytolens.errors import CytolensError, DataError
from cytolens.inference.model import CellModel, Model
from cytolens.inference.predictors import PATCHES_PER_PASS, PatchPredictor
from cytolens.inference.scale import scale_factor
from cytolens.io.images import image_mpp, read_image
from cytolens.metrics import evaluate_datasets
from cytolens.metrics.classification_report import write_classification_report
from cytolens.metrics.patch_classification import ScoredPatches, group_indices, patch_metrics
from cytolens.metrics.report import write_report
from cytolens.models.task_registry import TaskRegistry
from cytolens.progress import progress as show_progress


@dataclass(frozen=True)
class EvaluationOptions:
    """How to evaluate; each evaluator refuses the options that are not for its task.

    Attributes:
        radius: Point-matching radius in pixels (point detectors; default: the model's).
        ignore_unlabelled: Predicted points on unlabelled cells count neither as right nor wrong (point detectors).
        positive: Class names whose presence is scored as one yes/no question (patch classifiers).
        touching: Cells closer than this many pixels form one multi-label patch (patch classifiers).
        batch_size: Images (detectors, default 1) or patches (classifiers, default: as many as make
            :data:`~cytolens.inference.predictors.PATCHES_PER_PASS` crops) per forward pass.
        progress: Show a progress bar.

    """

    radius: float | None = None
    ignore_unlabelled: bool = False
    positive: Sequence[str] | None = None
    touching: float | None = None
    batch_size: int | None = None
    progress: bool = True


class Evaluation(ABC):
    """What evaluating a model gives: its figures (plain JSON data), and its report."""

    figures: dict[str, Any]

    @abstractmethod
    def write_report(self, folder: str | Path) -> Path:
        """Write the report (an HTML page, ``metrics.json`` and plots) to ``folder``; returns the page's path."""


@dataclass
class DetectorEvaluation(Evaluation):
    """Predicted cells scored against the truth (see :func:`cytolens.metrics.evaluate_datasets`)."""

    figures: dict[str, Any]
    predictions: Dataset
    truth: Dataset
    radius: float | None = None

    def write_report(self, folder: str | Path) -> Path:
        """See :func:`cytolens.metrics.report.write_report`."""
        return write_report(self.figures, self.predictions, self.truth, folder, self.radius)


@dataclass
class ClassifierEvaluation(Evaluation):
    """A classifier's patches scored against their truth (see :func:`cytolens.metrics.patch_classification`)."""

    figures: dict[str, Any]
    scored: ScoredPatches
    title: str

    def write_report(self, folder: str | Path) -> Path:
        """See :func:`cytolens.metrics.classification_report.write_classification_report`."""
        return write_classification_report(self.figures, self.scored, folder, self.title)


Evaluator = Callable[[Model, Dataset, EvaluationOptions], Evaluation]
_EVALUATORS = TaskRegistry[Evaluator]("evaluator")
EvaluatorType = TypeVar("EvaluatorType", bound=Evaluator)


def register_evaluator(*tasks: str) -> Callable[[EvaluatorType], EvaluatorType]:
    """Decorator registering the evaluator of models of ``tasks`` (a task registered twice is a ValueError)."""
    return _EVALUATORS.register(*tasks)


def evaluate(model: Model, truth: Dataset, options: EvaluationOptions = EvaluationOptions()) -> Evaluation:
    """Score ``model`` on ``truth`` with the evaluator of its task.

    Raises:
        CytolensError: If no evaluator is registered for the task, or an option is not for it.
        DataError: If an image cannot be read.

    """
    if model.task not in _EVALUATORS.entries:
        known = ", ".join(_EVALUATORS.entries)
        raise CytolensError(f"{model.source}: {model.task} models cannot be evaluated (only {known} models)")
    return _EVALUATORS[model.task](model, truth, options)


def _refuse(model: Model, options: EvaluationOptions, **defaults: Any) -> None:
    """Refuse the options set away from ``defaults``: they are not for ``model``'s task."""
    given = [name for name, default in defaults.items() if getattr(options, name) != default]
    if given:
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CytolensError(f"{model.source}: {names} cannot apply to a {model.task} model")


def predict_dataset(model: Model, truth: Dataset, batch_size: int = 1, progress: bool = True) -> Dataset:
    """Run ``model`` on every image of ``truth`` keeping every detection (score threshold 0).

    Returns:
        The predictions (:class:`~cytolens.results.result.Result` images) as a dataset with the model's classes
        and the truth's image ids.

    Raises:
        DataError: If an image cannot be read (evaluation needs all of them).

    """
    ids = {str(image.path): image.image_id for image in truth.images}
    images = []
    items = model.predict_iter([image.path for image in truth.images], batch_size=batch_size, score_threshold=0.0)
    for item in show_progress(items, len(truth), "evaluating", progress):
        if isinstance(item, DataError):
            raise item
        images.append(replace(item, image_id=ids.get(str(item.path), item.image_id)))
    return Dataset(model.classes, images, name=f"{model.source} on {truth.name}")


def evaluate_model(
    model: Model,
    truth: Dataset,
    radius: float | None = None,
    batch_size: int = 1,
    progress: bool = True,
    ignore_unlabelled: bool = False,
) -> tuple[dict[str, Any], Dataset]:
    """Score a detector on ``truth``: AP or point matching over every detection, counts at the model's threshold.

    Args:
        model: The model.
        truth: Annotated images.
        radius: Point-matching radius in pixels (default: the one stored with a point model).
        batch_size: Images per forward pass.
        progress: Show a progress bar.
        ignore_unlabelled: The truth labels only some cells of an image: predicted centres on unlabelled
            cells count neither as right nor as wrong
            (see :func:`cytolens.metrics.evaluate_datasets`).

    Returns:
        The figures (see :func:`cytolens.metrics.evaluate_datasets`) and the predictions.

    """
    predictions = predict_dataset(model, truth, batch_size, progress)
    if radius is None:
        radius = model.card.evaluation.radius
    threshold = model.count_threshold
    figures = evaluate_datasets(predictions, truth, radius, threshold, ignore_unlabelled)
    figures["model"] = model.source
    figures["score_threshold"] = threshold
    return figures, predictions


@register_evaluator("boxes", "points")
def _evaluate_detector(model: Model, truth: Dataset, options: EvaluationOptions) -> DetectorEvaluation:
    _refuse(model, options, positive=None, touching=None)
    radius = model.card.evaluation.radius if options.radius is None else options.radius
    figures, predictions = evaluate_model(
        model, truth, radius, options.batch_size or 1, options.progress, options.ignore_unlabelled
    )
    return DetectorEvaluation(figures, predictions, truth, radius)


def classify_patches(
    model: Model, truth: Dataset, touching: float | None = None, batch_size: int | None = None, progress: bool = True
) -> ScoredPatches:
    """The probabilities and calls of a patch classifier on the labelled patches of ``truth``.

    The patches are those of :func:`~cytolens.data.patches.image_patches`: an image of a crop folder (image
    labels, no cells) is one patch, the whole image; a cell marked by a point is the square of the card's
    ``patch.side`` about it (at the model's µm/px: the side in an image's pixels follows the image's µm/px, as
    given by the dataset or its TIFF tags); a cell with a box is its box squared and padded by ``patch.pad``.
    Cells closer than ``touching`` pixels make one patch holding the set of their types. Each patch is
    classified by :meth:`~cytolens.inference.predictors.PatchPredictor.classify`, its probabilities averaged
    over the model's test-time views.

    The classes are the model's, then those of the truth the model does not know (which it never calls).

    Args:
        model: A patch classifier.
        truth: Annotated images: crops with image labels, or images with labelled cells.
        touching: Cells closer than this many pixels form one multi-label patch (``None``: one patch per cell).
        batch_size: Patches per forward pass, each with its views (``None``: as many as make
            :data:`~cytolens.inference.predictors.PATCHES_PER_PASS` crops).
        progress: Show a progress bar.

    Raises:
        CytolensError: If ``model`` is not a patch classifier, or cells marked by points meet a model whose card
            gives no patch side.
        DataError: If an image cannot be read.

    """
    predictor = model.predictor if isinstance(model, CellModel) else None
    if not isinstance(predictor, PatchPredictor):
        raise CytolensError(f"{model.source}: a {model.task} model is not a patch classifier")
    classes = [*model.classes, *(name for name in truth.classes if name not in model.classes)]
    truth = truth.relabel(classes)
    geometry, known = predictor.geometry, len(model.classes)
    crops = PATCHES_PER_PASS if batch_size is None else batch_size * geometry.views
    patches, scores, calls = [], [], []
    for index, image in enumerate(show_progress(truth.images, len(truth), "classifying", progress)):
        factor = scale_factor(image.mpp or image_mpp(image.path), model.card.input.mpp)
        side = None if geometry.side is None else geometry.side / factor
        try:
            found = image_patches(index, image, side, geometry.pad, touching)
        except ValueError:
            raise CytolensError(
                f"{model.source}: its card gives no patch side (patch.side) to cut cells marked by points"
            ) from None
        if not found:
            continue
        probabilities = predictor.classify(
            read_image(image.path), [patch.centre for patch in found], [patch.side for patch in found],
            predictor.views(1 / factor), crops,
        )  # fmt: skip
        patches += found
        scores.append(np.pad(probabilities, ((0, 0), (0, len(classes) - known))))
        for called in predictor.calls(probabilities):
            calls.append(np.isin(np.arange(len(classes)), called).astype(np.int64))
    return ScoredPatches(
        classes, truth.images, patches, np.concatenate(scores or [np.zeros((0, len(classes)))]),
        np.array(calls).reshape(-1, len(classes)), predictor.multi_label,
    )  # fmt: skip


def evaluate_classifier(
    model: Model,
    truth: Dataset,
    positive: Sequence[str] | None = None,
    touching: float | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> ClassifierEvaluation:
    """Score a patch classifier on the labelled patches of ``truth`` (see :func:`classify_patches`).

    Args:
        model: A patch classifier (its test-time views set with :meth:`~cytolens.inference.model.CellModel.with_views`).
        truth: Annotated images.
        positive: Class names whose presence is also scored as one yes/no question (e.g. the abnormal types).
        touching: Cells closer than this many pixels form one multi-label patch.
        batch_size: Patches per forward pass (see :func:`classify_patches`).
        progress: Show a progress bar.

    Returns:
        The figures (:func:`~cytolens.metrics.patch_classification.patch_metrics`, with ``model`` and ``views``,
        the test-time views averaged) and the scored patches, for the report.

    Raises:
        CytolensError: See :func:`classify_patches`; also if the truth holds no labelled patch, or ``positive``
            names a class that is not one.

    """
    if positive is not None:  # a misspelt class refused before the patches are classified
        group_indices([*model.classes, *truth.classes], positive)
    scored = classify_patches(model, truth, touching, batch_size, progress)
    if not len(scored):
        raise CytolensError(f"{truth.name}: nothing to evaluate: no labelled crop or cell")
    figures = patch_metrics(scored, positive)
    figures.update(model=model.source, views=model.predictor.geometry.views)
    return ClassifierEvaluation(figures, scored, str(truth.name))


@register_evaluator("patches")
def _evaluate_patch_classifier(model: Model, truth: Dataset, options: EvaluationOptions) -> ClassifierEvaluation:
    _refuse(model, options, radius=None, ignore_unlabelled=False)
    return evaluate_classifier(model, truth, options.positive, options.touching, options.batch_size, options.progress)
