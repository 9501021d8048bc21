"""Monte-Carlo dropout passes (issue 12) on the bundled models and small real images, without training.

Plain prediction stays deterministic and is the first pass; the stochastic passes differ from it and repeat with
their seed; the trunk runs once per image or tile whatever the number of passes; a model without a dropout rate
gets the default rate in a note, a rate of 0 is refused in one line; a pipeline's passes carry its classifier's
probabilities for the plain cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytolens.errors import CytolensError
from cytolens.inference.boxes import BoxTiling
from cytolens.inference.mc_dropout import DEFAULT_RATE
from cytolens.inference.model import load_model
from cytolens.inference.predictors import PATCHES_PER_PASS
from cytolens.inference.tiles import tiles
from cytolens.io.images import read_image
from cytolens.progress import NOTE

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "cytolens" / "examples" / "bccd" / "JPEGImages"


@pytest.fixture(scope="module")
def blood_cells():
    return load_model("blood-cells", backend="torch")


@pytest.fixture
def smear(chula) -> np.ndarray:
    """A 192 x 160 corner of a Chula RBC-12 smear: a few red cells."""
    return np.ascontiguousarray(read_image(chula / "Dataset" / "10.jpg")[:160, :192])


def _same(first, second) -> bool:
    return len(first) == len(second) and np.array_equal(first.centres, second.centres) and (
        first.boxes is None or np.array_equal(first.boxes, second.boxes)
    ) and np.array_equal(first.labels, second.labels) and np.array_equal(first.scores, second.scores)


@pytest.fixture
def counting():
    """``counting(module)``: a list growing by one at every forward call of ``module`` (hooks removed after)."""
    handles = []

    def count(module) -> list[int]:
        calls: list[int] = []
        handles.append(module.register_forward_hook(lambda *_: calls.append(1)))
        return calls

    yield count
    for handle in handles:
        handle.remove()


def test_plain_prediction_is_deterministic_and_the_first_pass(blood_cells):
    image = EXAMPLE / "BloodImage_00007.jpg"
    first, second = blood_cells.predict(image)[0], blood_cells.predict(image)[0]
    assert _same(first.cells, second.cells) and len(first.cells) > 10
    [(result, passes)] = list(blood_cells.passes_iter(image, passes=3, dropout=0.2))
    assert _same(passes.cells[0], first.cells) and _same(result.cells, first.cells)
    assert passes.probabilities is None and passes.classes == blood_cells.classes and len(passes) == 3
    after = blood_cells.predict(image)[0]  # the passes leave the model as it was
    assert _same(after.cells, first.cells)
    assert all(module.p == 0 and not module.training for module in blood_cells.network.head_dropouts())


def test_stochastic_passes_differ_from_the_plain_one_and_repeat_with_their_seed(blood_cells):
    image = EXAMPLE / "BloodImage_00011.jpg"

    def passes(seed):
        return next(blood_cells.passes_iter(image, passes=3, seed=seed, dropout=0.2))[1].cells

    once, again, other = passes(0), passes(0), passes(1)
    assert all(_same(one, two) for one, two in zip(once, again, strict=True))
    assert not _same(once[1], once[0]) and not _same(once[1], once[2])
    assert not _same(once[1], other[1])


def test_the_trunk_runs_once_per_tile_for_all_passes(blood_cells, counting):
    image = EXAMPLE / "BloodImage_00015.jpg"
    model = blood_cells.with_tiling(tile_size=480, overlap=96)  # a 640 x 480 field in full-size 480 x 360 tiles
    windows = BoxTiling.of(model.network, model.card.input).windows(640, 480)
    assert len(windows) > 1
    body, head = counting(model.network.backbone.body), counting(model.network.head)
    found = list(model.passes_iter(image, passes=4, dropout=0.1))
    assert len(found) == 1 and len(found[0][1].cells) == 4
    assert len(body) == len(windows)  # tiles of a batch go through the network together: one call per tile here
    assert len(head) == 4 * len(windows)


def test_point_model_trunk_once_per_tile_and_passes_seeded(smear, counting):
    model = load_model("rbc-morphology-points").with_tiling(tile_size=128, overlap=64)
    encoder = counting(model.network.encoder)
    [(result, passes)] = list(model.passes_iter(smear, passes=3, seed=5, dropout=0.3))
    assert len(encoder) == len(list(tiles(160, 192, 128, 64, multiple=32)))
    assert _same(result.cells, model.predict(smear)[0].cells) and _same(passes.cells[0], result.cells)
    [(_, again)] = list(model.passes_iter(smear, passes=3, seed=5, dropout=0.3))
    assert all(_same(one, two) for one, two in zip(passes.cells, again.cells, strict=True))
    assert not all(_same(passes.cells[0], stochastic) for stochastic in passes.cells[1:])


def test_a_model_without_a_dropout_rate_gets_the_default_rate_in_a_note(blood_cells, caplog):
    with caplog.at_level(NOTE, logger="cytolens"):
        [(_, passes)] = list(blood_cells.passes_iter(EXAMPLE / "BloodImage_00007.jpg", passes=3))
    notes = [record.getMessage() for record in caplog.records if record.levelno == NOTE]
    assert [note for note in notes if "dropout" in note] == [
        f"blood-cells: its heads were trained without dropout: Monte-Carlo passes at dropout {DEFAULT_RATE:g} "
        "(--dropout to change)"
    ]
    assert not all(_same(passes.cells[0], stochastic) for stochastic in passes.cells[1:])


def test_a_dropout_rate_of_zero_is_refused_in_one_line(blood_cells):
    with pytest.raises(CytolensError, match="dropout") as error:
        next(blood_cells.passes_iter(EXAMPLE / "BloodImage_00007.jpg", passes=3, dropout=0.0))
    assert "\n" not in str(error.value)


def test_pipeline_passes_give_classifier_probabilities_of_the_plain_cells(smear, counting):
    model = load_model("rbc-morphology").with_views(1)
    features = counting(model.classifier.network.body)
    [(result, passes)] = list(model.passes_iter(smear, passes=3, dropout=0.1))
    cells = len(result.cells)
    assert cells > 0 and passes.probabilities.shape == (3, cells, len(model.classes)) == (3, cells, 13)
    assert np.allclose(passes.probabilities.sum(axis=2), 1.0)
    assert np.allclose(passes.probabilities[0], result.cells.probabilities)
    assert np.allclose(passes.probabilities[0], model.predict(smear)[0].cells.probabilities)
    assert not np.allclose(passes.probabilities[1], passes.probabilities[0])  # the classifier's own dropout (0.2)
    batches = -(-cells // PATCHES_PER_PASS)  # of windows (one view each)
    assert len(features) == 2 * batches  # once for all the passes, once for predict()
    assert passes.classes == model.classes and _same(passes.cells[0], result.cells)
