"""Detect -> classify pipelines: a detector finds the cells, a patch classifier says what each one is.

A :class:`Pipeline` runs its detector (a box or point model, with its thresholds, tiling and scale handling)
on each image; every cell found is cut out of the image as a square window and classified by the patch
classifier (:meth:`~cytolens.inference.predictors.PatchPredictor.classify`, averaged over its test-time
views): the cell's class and probabilities become the classifier's, its position and detection score stay.

Windows are cut as the classifier was trained on them (:func:`~cytolens.data.patches.image_patches`): a box
squared and padded by the classifier's ``patch.pad``; around a point, a square of the classifier's
``patch.side``, given in pixels at the classifier's µm/px and so scaled by ``classifier µm/px / image
µm/px`` (an image stating no µm/px is taken at the detector's, as the detector takes it).

A pipeline is loaded like a model, from a pipeline file or from a detector and a classifier
(:func:`~cytolens.inference.model.load_model` with ``classifier=``), and predicts like one
(:class:`~cytolens.inference.model.Model`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, cast

import numpy as np

from cytolens.data.cells import ScoreThreshold
from cytolens.data.patches import image_patches
from cytolens.data.stain import StainMethod
from cytolens.errors import CytolensError, DataError
from cytolens.inference.mc_dropout import Passes, pass_rate, shared_trunk, stochastic_heads
from cytolens.inference.model import CellModel, Images, Model, failure
from cytolens.inference.predictors import PatchPredictor
from cytolens.inference.scale import scale_factor
from cytolens.models.card import ModelCard, Report
from cytolens.models.checkpoint import PipelineCard, check_pipeline
from cytolens.results.result import Result


class Pipeline(Model):
    """A detector and the patch classifier of the cells it finds, predicting as one model.

    Args:
        finder: The detector (a box or point model).
        classifier: The patch classifier.
        source: Where the pipeline came from (a pipeline file, or ``detector + classifier``), for messages.
        about: The pipeline file's own card (figures, notice).

    Raises:
        ModelError: If the two do not make a pipeline (see :func:`~cytolens.models.checkpoint.check_pipeline`).

    Examples:
        >>> pipeline = cytolens.load_model("blood-cells", classifier="wbc-classifier.pt")  # doctest: +SKIP
        >>> pipeline.predict("BloodImage_00015.jpg")[0].cells.probabilities  # doctest: +SKIP

    """

    def __init__(self, finder: CellModel, classifier: CellModel, source: str, about: PipelineCard | None = None):
        check_pipeline(source, finder.card, classifier.card)
        self.finder = finder
        self.classifier = classifier
        self.source = source
        self.about = about or PipelineCard()

    @property
    def patches(self) -> PatchPredictor:
        """The classifier's predictor, which classifies the cells."""
        return cast(PatchPredictor, self.classifier.predictor)  # check_pipeline: the classifier's task is patches

    @property
    def card(self) -> ModelCard:
        """The card of the cells the pipeline gives: the detector's (task, input, thresholds, tiling, evaluation
        radius) with the classifier's classes, the count ratios among them and the pipeline's figures and notice.

        Its thresholds are the detector's as stored, which the detector applies before the classifier runs: per-class
        score thresholds name the detector's classes (as ``score_threshold`` of :meth:`predict_iter` does), not the
        pipeline's.
        """
        card = self.finder.card
        classes = self.classifier.card.classes
        ratios = tuple(pair for pair in card.report.ratios if set(pair) <= set(classes))
        notice = self.about.notice or card.notice
        return replace(card, classes=classes, report=Report(ratios), metrics=self.about.metrics, notice=notice)

    @property
    def count_threshold(self) -> ScoreThreshold | None:
        """The lowest of the detector's score thresholds: its cells keep their detection scores but take the
        classifier's classes, which its per-class thresholds do not name.
        """
        threshold = self.thresholds.min_score
        return min(threshold.values(), default=0.0) if isinstance(threshold, Mapping) else threshold

    def _with(self, finder: CellModel, classifier: CellModel) -> Pipeline:
        return Pipeline(finder, classifier, self.source, self.about)

    def with_thresholds(self, **thresholds: Any) -> Pipeline:
        """The same pipeline with other detector thresholds (see :meth:`CellModel.with_thresholds
        <cytolens.inference.model.CellModel.with_thresholds>`).
        """
        return self._with(self.finder.with_thresholds(**thresholds), self.classifier)

    def with_tiling(self, tile_size: int | None = None, overlap: int | None = None) -> Pipeline:
        """The same pipeline with the detector cutting large images into other tiles."""
        return self._with(self.finder.with_tiling(tile_size, overlap), self.classifier)

    def with_views(self, views: int) -> Pipeline:
        """The same pipeline with the classifier averaging another number of test-time views per cell."""
        return self._with(self.finder, self.classifier.with_views(views))

    def with_stain(self, method: StainMethod | None, reference: np.ndarray | None = None) -> Pipeline:
        """The same pipeline with its detector normalising each image's stain first (the classifier sees the image's
        own pixels).
        """
        return self._with(self.finder.with_stain(method, reference), self.classifier)

    def with_flips(self, flips: bool = True) -> Pipeline:
        """The same pipeline with its point detector's test-time flips on or off."""
        return self._with(self.finder.with_flips(flips), self.classifier)

    def __repr__(self) -> str:
        return f"Pipeline({self.source!r}, task={self.task!r}, classes={self.classes})"

    def image_scale(self, mpp: float | None) -> float:
        """Image pixels per pixel at the classifier's µm/px, for an image at ``mpp`` (``None``: the detector's)."""
        return 1 / scale_factor(mpp or self.finder.card.input.mpp, self.classifier.card.input.mpp)

    def classify(self, result: Result) -> Result | DataError:
        """``result`` (the detector's, carrying its image's pixels) with its cells classified by the classifier:
        labels its most probable types, probabilities its ``(N, C)`` probabilities, classes its classes; or the
        image's :class:`DataError` if classifying fails.
        """
        try:
            geometry, scale = self.patches.geometry, self.image_scale(result.mpp)
            side = None if geometry.side is None else geometry.side * scale
            windows = image_patches(0, result, side, geometry.pad)  # detected cells all have a class
            probabilities = self.patches.classify(
                result.pixels, [window.centre for window in windows], [window.side for window in windows],
                self.patches.views(scale),
            )  # fmt: skip
        except CytolensError:
            raise
        except Exception as error:  # torch raises assorted types; one image must not stop a run
            return failure(result.path, error)
        cells = replace(result.cells, labels=probabilities.argmax(axis=1), probabilities=probabilities)
        return replace(result, cells=cells, classes=self.classes)

    def _predict_images(
        self, images: Images, batch_size: int, score_threshold: ScoreThreshold | None, mpp: float | None
    ) -> Iterator[Result | DataError]:
        """The detector finds the cells (``batch_size``, ``score_threshold`` in its classes and ``mpp`` are the
        detector's), then the classifier classifies them.
        """
        for item in self.finder.predict_iter(images, batch_size, score_threshold, mpp):
            yield item if isinstance(item, DataError) else self.classify(item)

    def _passes_images(
        self,
        images: Images,
        batch_size: int,
        score_threshold: ScoreThreshold | None,
        mpp: float | None,
        passes: int,
        seed: int,
        dropout: float | None,
    ) -> Iterator[tuple[Result | DataError, Passes | None]]:
        """The detector's passes (at ``dropout``, else its own rate) give the cells; the classifier classifies the
        cells of the plain pass once plainly and ``passes - 1`` times with its head's dropout on (its own rate, else
        ``dropout``), computing each window's features once.
        """
        network = self.classifier.network
        rate = pass_rate(network, self.classifier.source, fallback=dropout)
        found_passes = self.finder._passes_images(images, batch_size, score_threshold, mpp, passes, seed, dropout)
        for result, found in found_passes:
            if found is None:
                yield result, None
                continue
            with shared_trunk(network):
                classified = [self.classify(cast(Result, result))]
                with stochastic_heads(network, rate, seed):
                    classified += [self.classify(cast(Result, result)) for _ in range(passes - 1)]
            failed = next((run for run in classified if isinstance(run, DataError)), None)
            if failed is not None:
                yield failed, None
                continue
            plain = cast(Result, classified[0])
            probabilities = np.stack([cast(Result, run).cells.probabilities for run in classified])
            yield plain, Passes([plain.cells, *found.cells[1:]], probabilities, self.classes)


__all__ = ["Pipeline"]
