"""Pairing predicted boxes with true boxes in one image, the way COCO matches them at one IoU threshold.

:func:`match_boxes` is class-aware and greedy by score: predictions in descending score order each
take the still unmatched true box of the same class with the highest IoU, if that IoU is at least
the threshold. IoUs come from :func:`torchvision.ops.box_iou`. It serves per-image error counts
(true positives, missed and false cells); average precision over a dataset is
:func:`cytolens.metrics.boxes.box_ap`'s job.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou


def match_boxes(
    pred_boxes: np.ndarray,
    pred_labels: np.ndarray,
    pred_scores: np.ndarray | None,
    true_boxes: np.ndarray,
    true_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Pair predicted with true boxes one-to-one: same class, IoU at least ``iou_threshold``, best scores first.

    Args:
        pred_boxes: ``(P, 4)`` predicted ``xyxy`` boxes.
        pred_labels: ``(P,)`` predicted class indices.
        pred_scores: ``(P,)`` scores (``None``: all equal, taken in the given order).
        true_boxes: ``(T, 4)`` true ``xyxy`` boxes.
        true_labels: ``(T,)`` true class indices.
        iou_threshold: Smallest IoU at which two boxes may pair.

    Returns:
        ``(K, 2)`` int array of ``(pred_index, true_index)`` pairs, in the order they were made.

    """
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    true_boxes = np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4)
    pairs = np.zeros((0, 2), dtype=np.int64)
    if not len(pred_boxes) or not len(true_boxes):
        return pairs
    iou = box_iou(torch.from_numpy(pred_boxes), torch.from_numpy(true_boxes)).numpy()
    same_class = np.asarray(pred_labels).reshape(-1, 1) == np.asarray(true_labels).reshape(1, -1)
    iou = np.where(same_class, iou, -1.0)
    scores = np.zeros(len(pred_boxes)) if pred_scores is None else np.asarray(pred_scores, dtype=np.float64)
    taken = np.zeros(len(true_boxes), dtype=bool)
    found = []
    for pred in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, iou[pred])
        true = int(np.argmax(candidates))
        if candidates[true] >= iou_threshold:
            taken[true] = True
            found.append((int(pred), true))
    return np.array(found, dtype=np.int64).reshape(-1, 2) if found else pairs
