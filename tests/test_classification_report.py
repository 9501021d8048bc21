"""The report of a patch classifier: metrics.json, ROC curves, confusion matrix and the misclassified patches."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytolens.data.annotations import AnnotatedImage
from cytolens.data.patches import Patch
from cytolens.metrics.classification_report import confusion_table, write_classification_report
from cytolens.metrics.numbers import json_safe
from cytolens.metrics.patch_classification import ScoredPatches, patch_metrics
from cytolens.metrics.patch_gallery import caption, misclassified, patch_pictures
from cytolens.metrics.report import RESEARCH_ONLY

CLASSES = ["NILM", "HSIL", "SCC"]


def one_hot(scores: np.ndarray) -> np.ndarray:
    return np.eye(scores.shape[1], dtype=int)[scores.argmax(axis=1)]


@pytest.fixture
def cric_crops(cric: Path) -> ScoredPatches:
    """Six real CRIC crops (two per class), each one whole-image patch, with made-up probabilities."""
    names = ["NILM/10034", "NILM/10092", "HSIL/8825", "HSIL/133", "SCC/7652", "SCC/2"]
    images = [AnnotatedImage(cric / f"{name}.png", 100, 100, name) for name in names]
    labels = [CLASSES.index(name.split("/")[0]) for name in names]
    patches = [Patch(k, (image.width / 2, image.height / 2), 100.0, (label,), 0) for k, (image, label) in
               enumerate(zip(images, labels, strict=True))]
    scores = np.array([
        [0.9, 0.05, 0.05],  # NILM, right
        [0.3, 0.6, 0.1],  # NILM called HSIL at 0.6
        [0.1, 0.8, 0.1],  # HSIL, right
        [0.95, 0.03, 0.02],  # HSIL called NILM at 0.95: the most confident mistake
        [0.1, 0.2, 0.7],  # SCC, right
        [0.2, 0.7, 0.1],  # SCC called HSIL at 0.7
    ])
    return ScoredPatches(CLASSES, images, patches, scores, one_hot(scores))


def embedded(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_of_a_single_label_classifier_on_real_crops(cric_crops: ScoredPatches, tmp_path: Path) -> None:
    figures = patch_metrics(cric_crops, positive=["HSIL", "SCC"]) | {"model": "made-up", "views": 1}
    assert figures["accuracy"] == 0.5
    assert figures["confusion"] == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    folder = tmp_path / "report"
    page_path = write_classification_report(figures, cric_crops, folder, "cric-cervical", worst=2)
    assert page_path == folder / "report.html"
    assert sorted(path.name for path in folder.iterdir()) == ["metrics.json", "report.html", "roc_curves.png"]
    assert json.loads((folder / "metrics.json").read_text()) == json_safe(figures)
    page = page_path.read_text()
    assert RESEARCH_ONLY in page and "made-up" in page and "6 patches from 6 images" in page
    assert "Positive group: holds HSIL or SCC" in page
    pictures = embedded(page)
    assert len(pictures) == 1 + 2  # ROC curves, two misclassified patches
    assert pictures[0] == (folder / "roc_curves.png").read_bytes()
    assert Image.open(io.BytesIO(pictures[0])).size == (1100, 500)  # two panels: per class and the group
    assert all(Image.open(io.BytesIO(picture)).size == (128, 128) for picture in pictures[1:])
    # The confusion matrix: rows true, columns called.
    assert "<th>true \\ called</th><th>NILM</th><th>HSIL</th><th>SCC</th>" in page
    row = re.search(r"<tr><th>SCC</th>(.*?)</tr>", page).group(1)
    assert re.findall(r">(\d+)</td>", row) == ["0", "1", "1"]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    hsil, scc = (image.image_id for image in (cric_crops.images[3], cric_crops.images[5]))
    assert captions == [  # the true class's probability lowest first: 0.03, 0.1 (NILM called HSIL at 0.3 not shown)
        f"{hsil}: true HSIL, called NILM; NILM 0.95, HSIL 0.03",
        f"{scc}: true SCC, called HSIL; HSIL 0.70, SCC 0.10",
    ]
    assert "The 2 most confident mistakes of 3 misclassified patches of 6." in page
    assert not list(folder.glob(".*.tmp"))


def test_the_gallery_pictures_are_the_patches_as_cut(cric_crops: ScoredPatches) -> None:
    assert misclassified(cric_crops, 10) == [3, 5, 1]  # true class at 0.03, 0.1, 0.3: gaps 0.97, 0.9, 0.7
    picture, = patch_pictures(cric_crops, [0], size=100)
    original = np.asarray(Image.open(cric_crops.images[0].path).convert("RGB"))
    np.testing.assert_array_equal(picture, original)  # a 100x100 crop, its own window at its own size


def test_report_of_a_multilabel_classifier_on_cells(tmp_path: Path) -> None:
    path = tmp_path / "field.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    image = AnnotatedImage(path, 80, 60, "field")
    patches = [Patch(0, (20.0, 20.0), 16.0, (0,)), Patch(0, (50.0, 30.0), 30.0, (0, 1), 2),
               Patch(0, (60.0, 45.0), 16.0, (2,))]
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1], [0.2, 0.1, 0.7]])
    scored = ScoredPatches(CLASSES, [image], patches, scores, (scores >= 0.5).astype(int), multi_label=True)
    figures = patch_metrics(scored)
    assert figures["exact_match"] == pytest.approx(2 / 3) and figures["hamming"] == pytest.approx(1 / 9)
    page = write_classification_report(figures, scored, tmp_path / "report", "field").read_text()
    assert "Confusion matrix" not in page and "Calls per type" in page
    assert "<th>exact match</th>" in page and "<th>Hamming loss</th>" in page
    assert re.findall(r"<figcaption>(.*?)</figcaption>", page) == [
        "field at (50, 30): true NILM + HSIL, called NILM; NILM 0.80, HSIL 0.30"
    ]
    assert len(embedded(page)) == 1 + 1
    assert caption(scored, 0) == "field at (20, 20): true NILM, called NILM; NILM 0.90"


def test_nothing_misclassified_says_so(cric_crops: ScoredPatches, tmp_path: Path) -> None:
    right = ScoredPatches(CLASSES, cric_crops.images, cric_crops.patches, np.asarray(cric_crops.truth, float),
                          cric_crops.truth)
    page = write_classification_report(patch_metrics(right), right, tmp_path, "cric").read_text()
    assert "No patch is misclassified." in page and "<figcaption>" not in page
    assert len(embedded(page)) == 1


def test_confusion_table_shades_by_row_share() -> None:
    table = confusion_table([[3, 1], [0, 0]], ["a", "b"])
    assert 'rgba(0, 114, 178, 0.60)">3<' in table and 'rgba(0, 114, 178, 0.20)">1<' in table
    assert 'rgba(0, 114, 178, 0.00)">0<' in table  # an empty row shades nothing
