"""Lining predictions up with the ground truth: images by ``image_id``, classes by name.

Every metric compares a prediction dataset with a ground-truth dataset whose class lists may differ
in order (or content) and whose images may not all have predictions. :func:`align_predictions`
settles that once: it returns predictions with one image per ground-truth image, in the same order,
and labels that index into the ground truth's class list.
"""

from __future__ import annotations

import logging

from cytolens.data.annotations import UNCLASSIFIED, AnnotatedImage, Dataset, class_index_map

log = logging.getLogger(__name__)


def align_predictions(predictions: Dataset, truth: Dataset) -> Dataset:
    """Predictions re-expressed against the ground truth's images and classes.

    Args:
        predictions: Predicted cells (and image scores), in any class order.
        truth: The ground truth.

    Returns:
        A dataset with ``truth.classes`` as its classes and one image per ground-truth image, in the
        same order: the prediction with the same ``image_id``, or an empty image when there is none.
        Predicted class names unknown to the ground truth become :data:`UNCLASSIFIED` (with a
        warning); image scores are reordered to the ground-truth classes (0 for classes the
        predictions lack). Predicted images not in the ground truth are ignored (with a warning).

    Raises:
        DataError: If a predicted image has image scores for a different number of classes than
            its dataset.

    """
    mapping = class_index_map(predictions.classes, truth.classes)
    unknown = [name for name, index in zip(predictions.classes, mapping, strict=True) if index == UNCLASSIFIED]
    if unknown:
        log.warning("predicted classes not in the ground truth count as unclassified: %s", ", ".join(unknown))
    by_id = {image.image_id: image for image in predictions.images}
    truth_ids = {image.image_id for image in truth.images}
    extra = len(by_id.keys() - truth_ids)
    if extra:
        log.warning("%d predicted images are not in the ground truth and are ignored", extra)
    missing = len(truth_ids - by_id.keys())
    if missing:
        log.warning("%d ground-truth images have no predictions and count as empty", missing)
    images = [
        by_id[image.image_id].relabel(mapping, truth.classes)
        if image.image_id in by_id
        else AnnotatedImage(image.path, image.width, image.height, image.image_id, image.mpp)
        for image in truth.images
    ]
    return Dataset(list(truth.classes), images, {}, predictions.name, predictions.licence)
