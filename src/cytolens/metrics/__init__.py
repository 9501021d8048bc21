"""Metrics: COCO AP for boxes, radius matching for points, classification and counting figures.

Every function returns plain JSON-ready values (``None`` where a figure is undefined).
"""

from cytolens.metrics.boxes import MAX_DETECTIONS, box_ap, plot_pr_curves
from cytolens.metrics.classification import (
    aggregate_folds,
    classification_metrics,
    image_classification_metrics,
    multilabel_metrics,
)
from cytolens.metrics.counting import count_metrics
from cytolens.metrics.evaluate import evaluate_datasets
from cytolens.metrics.pairing import align_predictions
from cytolens.metrics.points import match_points, point_metrics

__all__ = [
    "MAX_DETECTIONS",
    "aggregate_folds",
    "align_predictions",
    "box_ap",
    "classification_metrics",
    "count_metrics",
    "evaluate_datasets",
    "image_classification_metrics",
    "match_points",
    "multilabel_metrics",
    "plot_pr_curves",
    "point_metrics",
]
