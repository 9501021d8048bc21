"""Ranking images by their MC-dropout passes (cytolens.inference.ranking), on hand-made passes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cytolens.data.cells import Cells
from cytolens.errors import DataError, ModelError
from cytolens.inference.ranking import RankSettings, rank_iter, ranking_table, score_passes
from cytolens.results.result import Result

CLASSES = ["normal", "rare"]
BOXES = [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]


@dataclass(frozen=True)
class FakePasses:
    """What ``Model.passes_iter`` gives per image (the fields of ``cytolens.inference.mc_dropout.Passes``)."""

    cells: list[Cells]
    probabilities: np.ndarray | None = None
    classes: list[str] = field(default_factory=lambda: list(CLASSES))


def _result(cells: Cells, name: str = "a") -> Result:
    return Result(Path(f"{name}.png"), 100, 100, name, cells=cells, classes=list(CLASSES))


def _box_passes() -> FakePasses:
    plain = Cells(boxes=BOXES, labels=[0, 0, 1], scores=[0.9, 0.8, 0.7])
    missing = Cells(boxes=BOXES[:2], labels=[0, 0], scores=[0.9, 0.8])
    relabelled = Cells(boxes=BOXES, labels=[0, 1, 1], scores=[0.9, 0.6, 0.7])
    return FakePasses([plain, missing, relabelled, plain])


def test_a_detectors_passes_give_cells_their_uncertainties() -> None:
    passes = _box_passes()
    ranked = score_passes(_result(passes.cells[0]), passes, RankSettings(rare=("rare",)), rare=[1])
    extras = ranked.result.cells.extras
    assert extras["Ud"].tolist() == pytest.approx([1.0, 1.0, 2 / 3])
    assert extras["Uc"].tolist() == pytest.approx([1.0, 0.75, 0.75])
    # the rare class's mean score: cell 3, 0.7 in 3 passes of 4 (0.525); cell 2, 0.6 in one (0.15)
    assert extras["Ur"].tolist() == [0.0, 0.0, 1.0]
    assert ranked.relevance == 2 + 1 + 10 * 1
    assert (ranked.n_uncertain, ranked.n_rare) == (2, 1)
    assert ranked.scores["entropy"] > ranked.scores["bald"] > 0
    assert ranked.result.cells.boxes.tolist() == passes.cells[0].boxes.tolist()


def test_a_pipelines_classifier_gives_uc_and_ur() -> None:
    points = Cells(centres=[[10, 10], [50, 50]], labels=[0, 1], scores=[0.9, 0.9])
    moved = Cells(centres=[[13, 14], [50, 50]], labels=[0, 0], scores=[0.9, 0.9])  # the detector's own classes
    probabilities = np.array([
        [[0.9, 0.1], [0.4, 0.6]],
        [[0.9, 0.1], [0.7, 0.3]],
        [[0.85, 0.15], [0.6, 0.4]],
    ])
    passes = FakePasses([points, moved, points], probabilities)
    ranked = score_passes(_result(points), passes, RankSettings(), radius=10, rare=[1])
    extras = ranked.result.cells.extras
    assert extras["Ud"].tolist() == pytest.approx([0.75, 1.0])  # displaced by 5 of 10 in one pass of two
    assert extras["Uc"].tolist() == pytest.approx([1.0, 2 / 3])
    assert extras["Ur"].tolist() == [0.0, 1.0]
    assert ranked.relevance == 1 + 1 + 10
    no_rare = score_passes(_result(points), passes, RankSettings(), radius=10)
    assert no_rare.relevance == 2 and no_rare.n_rare == 0


class FakeModel:
    """A model whose passes are given (``passes_iter`` as ``Model.passes_iter`` calls it)."""

    def __init__(self, items: list[tuple[Any, Any]], task: str = "boxes", radius: float | None = None) -> None:
        self.items, self.task, self.source, self.classes = items, task, "fake-model", list(CLASSES)
        self.card = SimpleNamespace(evaluation=SimpleNamespace(radius=radius))
        self.asked: dict[str, Any] = {}

    def passes_iter(self, images: Any, passes: int, seed: int, dropout: float | None, **options: Any) -> Iterator:
        self.asked = {"passes": passes, "seed": seed, "dropout": dropout, **options}
        yield from self.items


def test_rank_iter_scores_each_image_and_passes_failures_on() -> None:
    passes = _box_passes()
    steady = FakePasses([passes.cells[0]] * 4)
    failure = DataError("bad.png", "cannot be read")
    items = [(_result(passes.cells[0], "a"), passes), (failure, None), (_result(steady.cells[0], "b"), steady)]
    model = FakeModel(items)
    settings = RankSettings(passes=4, seed=7, dropout=0.2, rare=("rare",))
    items = list(rank_iter(model, ["a.png", "bad.png", "b.png"], settings, batch_size=2))
    assert model.asked == {"passes": 4, "seed": 7, "dropout": 0.2, "batch_size": 2}
    assert items[1] is failure
    assert [item.relevance for item in (items[0], items[2])] == [13.0, 10.0]  # b: its one rare cell
    again = list(rank_iter(model, [], settings, batch_size=2))
    assert [items[i].scores["random"] for i in (0, 2)] == [again[i].scores["random"] for i in (0, 2)]
    table = ranking_table([items[2], items[0]])
    assert table["image"].tolist() == ["a", "b"]
    assert table.columns.tolist() == ["image", "R", "entropy", "bald", "random", "n_cells", "n_uncertain", "n_rare"]
    assert table.iloc[0][["n_cells", "n_uncertain", "n_rare"]].tolist() == [3, 2, 1]
    by_entropy = ranking_table([items[0], items[2]], "entropy")
    assert by_entropy["entropy"].is_monotonic_decreasing


def test_rank_iter_refuses_an_unknown_rare_class_and_points_without_a_radius() -> None:
    with pytest.raises(DataError, match="rare classes: class 'teardrop' is not in the class map"):
        rank_iter(FakeModel([]), [], RankSettings(rare=("teardrop",)))
    with pytest.raises(ModelError, match="fake-model: its card names no matching radius"):
        rank_iter(FakeModel([], task="points"), [])
    with pytest.raises(ValueError, match="unknown ranking heuristic 'margin'"):
        RankSettings(heuristic="margin")
