"""Evaluating a trained model on an annotated dataset."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cytolens.data.annotations import Dataset
from cytolens.errors import DataError
from cytolens.inference.model import CellModel
from cytolens.metrics import evaluate_datasets
from cytolens.progress import progress as show_progress


def predict_dataset(model: CellModel, truth: Dataset, batch_size: int = 1, progress: bool = True) -> Dataset:
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
    model: CellModel,
    truth: Dataset,
    radius: float | None = None,
    batch_size: int = 1,
    progress: bool = True,
    ignore_unlabelled: bool = False,
) -> tuple[dict[str, Any], Dataset]:
    """Score ``model`` on ``truth``: AP or point matching over every detection, counts at the model's threshold.

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
    threshold = model.thresholds.min_score
    figures = evaluate_datasets(predictions, truth, radius, threshold, ignore_unlabelled)
    figures["model"] = model.source
    figures["score_threshold"] = threshold
    return figures, predictions
