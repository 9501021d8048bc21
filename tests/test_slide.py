"""Whole slides: reading levels lazily, level choice and rescaling, tissue mask, border cells once, resume."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy.spatial.distance import cdist
from skimage.color import rgb2hsv
from typer.testing import CliRunner

import cytolens
from conftest import dataset_path
from cytolens.cli.main import app
from cytolens.data.cells import Cells
from cytolens.data.tissue import saturation_of
from cytolens.errors import DataError
from cytolens.inference import slide as slide_module
from cytolens.inference.parallel import ModelSpec
from cytolens.inference.slide import choose_level, predict_slide, predict_slides
from cytolens.io.images import max_pixels, read_image, set_max_pixels
from cytolens.io.output_run import OutputRun
from cytolens.io.slides import Slide, is_slide, open_slide
from test_patch_predict import tiny_classifier

pytestmark = pytest.mark.usefixtures("one_thread")

BOXES = ModelSpec("blood-cells", backend="torch")
POINTS = ModelSpec("rbc-morphology-points")


def write_slide(path: Path, levels: list[np.ndarray], mpp: float | None) -> Path:
    """A tiled, uncompressed pyramidal TIFF (OME with ``PhysicalSizeX`` when ``mpp``): the levels as SubIFDs."""
    metadata: dict = {"axes": "YXS"}
    if mpp is not None:
        metadata.update(PhysicalSizeX=mpp, PhysicalSizeXUnit="µm", PhysicalSizeY=mpp, PhysicalSizeYUnit="µm")
    with tifffile.TiffWriter(path, ome=mpp is not None) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, tile=(128, 128), photometric="rgb", metadata=metadata)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=(128, 128), photometric="rgb")
    return path


def write_svs(path: Path, levels: list[np.ndarray], mpp: float) -> Path:
    """An Aperio SVS laid out as scanners write it: the tiled baseline (its scale in the description), a stripped
    thumbnail, then the tiled reduced levels.
    """
    head = "Aperio Image Library v12.0.15 \r\n"
    height, width = levels[0].shape[:2]
    thumbnail = levels[-1][::4, ::4]
    pages = [(levels[0], (128, 128), f"{width}x{height} (128x128) RAW/RGB|AppMag = 40|MPP = {mpp}")]
    pages.append((thumbnail, None, f"{width}x{height} -> {thumbnail.shape[1]}x{thumbnail.shape[0]} - "))
    pages += [(level, (128, 128), f"{width}x{height} -> {level.shape[1]}x{level.shape[0]} - ") for level in levels[1:]]
    with tifffile.TiffWriter(path) as tif:
        for pixels, tile, description in pages:
            tif.write(pixels, tile=tile, photometric="rgb", description=head + description, metadata=None)
    return path


def resized(pixels: np.ndarray, factor: float) -> np.ndarray:
    size = (round(pixels.shape[1] * factor), round(pixels.shape[0] * factor))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def mosaic(fields: list[np.ndarray]) -> np.ndarray:
    """Four fields laid 2 x 2."""
    return np.concatenate([np.concatenate(fields[:2], axis=1), np.concatenate(fields[2:], axis=1)])


@pytest.fixture(scope="module")
def bccd_fields() -> list[np.ndarray]:
    root = dataset_path("bccd-txl") / "images" / "test"
    return [read_image(path) for path in sorted(root.glob("*.jpg"))[:4]]


@pytest.fixture(scope="module")
def chula_crops() -> list[np.ndarray]:
    """Four real Chula RBC-12 fields, cropped to 400 x 300."""
    root = dataset_path("chula-rbc-12") / "Dataset"
    return [read_image(root / f"{number}.jpg")[:300, :400] for number in (10, 100, 101, 102)]


def test_a_pyramid_is_read_lazily_with_its_scale(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    path = write_slide(tmp_path / "s.ome.tif", [pixels, resized(pixels, 0.5), resized(pixels, 0.25)], 0.25)
    assert not is_slide(path)  # a small pyramid (as QuPath exports) is an image for predict
    previous = max_pixels()
    try:
        set_max_pixels(600 * 800 - 1)
        assert is_slide(path)  # over the pixel limit: a slide
    finally:
        set_max_pixels(previous)
    with open_slide(path) as slide:
        assert slide.shape == (600, 800) and slide.mpp == 0.25
        assert slide.levels == [(600, 800, 1.0), (300, 400, 2.0), (150, 200, 4.0)]
        assert np.array_equal(slide.read(0, 10, 20, 30, 40), pixels[10:40, 20:60])
        assert np.array_equal(slide.read(1, 5, 6, 7, 8), resized(pixels, 0.5)[5:12, 6:14])
        assert slide.thumbnail(100).shape == (75, 100, 3)
    with open_slide(path, mpp=0.3) as slide:
        assert slide.mpp == 0.3


@pytest.mark.parametrize(
    ("model_mpp", "level"), [(0.6, 1), (0.5, 1), (0.51, 1), (0.2, 0), (1.2, 2), (5.0, 2), (None, 0)]
)
def test_the_level_read_is_the_coarsest_at_least_as_fine_as_the_model(model_mpp: float | None, level: int) -> None:
    slide = Slide(Path("s.tif"), 0.25, [(4000, 4000, 1.0), (2000, 2000, 2.0), (1000, 1000, 4.0)], None)
    assert choose_level(slide, model_mpp) == level


def test_a_slide_without_a_scale_is_taken_at_the_given_mpp_or_the_models(tmp_path: Path, bccd_fields) -> None:
    path = write_slide(tmp_path / "plain.tif", [bccd_fields[0]], None)
    with open_slide(path) as slide:
        assert slide.mpp is None
    assert not is_slide(path)  # one level, within the pixel limit: an image
    runner = CliRunner()
    plain = runner.invoke(app, ["slide", str(path), "--out", str(tmp_path / "a"), "--backend", "torch"])
    assert plain.exit_code == 0, plain.output
    assert "states no µm/px: taken at the model's 0.075 µm/px" in plain.output
    assert "unknown µm/px" in plain.output
    given = runner.invoke(app, ["slide", str(path), "--out", str(tmp_path / "b"), "--mpp", "0.075", "--backend",
                                "torch"])
    assert given.exit_code == 0, given.output
    summary = pd.read_csv(tmp_path / "b" / "summary.csv")
    field_mm2 = 640 * 480 * 0.075**2 / 1e6
    assert field_mm2 / 2 < summary["tissue_mm2"].iloc[0] <= field_mm2  # Otsu leaves out some of a smear's plasma
    assert (summary["cells_per_mm2"].dropna() >= 0).all()
    cells = pd.read_parquet(tmp_path / "a" / "cells.parquet")
    assert cells.equals(pd.read_parquet(tmp_path / "b" / "cells.parquet"))  # the model's scale either way


@pytest.mark.parametrize(("slide_mpp", "level", "factor"), [(0.0375, 1, 1.0), (0.05, 0, 2 / 3)])
def test_cells_are_found_at_the_chosen_level_and_mapped_to_level_0(
    tmp_path: Path, bccd_fields, slide_mpp: float, level: int, factor: float
) -> None:
    """Level 1 of a 0.0375 µm/px slide is at the model's 0.075; a 0.05 µm/px slide's level 0 is resized by 2/3."""
    field = bccd_fields[0]
    full = resized(field, 0.075 / slide_mpp)
    path = write_slide(tmp_path / "s.ome.tif", [full, resized(full, 0.5)], slide_mpp)
    summary = predict_slide(BOXES, path, tmp_path / "out", tissue=False, show_progress=False)
    assert (summary.level, summary.regions) == (level, 1)
    assert summary.factor == pytest.approx(factor)
    read = full if level == 0 else resized(full, 0.5)
    expected = cytolens.load_model("blood-cells", device="cpu", backend="torch").predict(
        [read], mpp=slide_mpp * 2**level)[0]
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    assert len(cells) == len(expected.cells) > 10
    boxes = cells[["x1", "y1", "x2", "y2"]].to_numpy()
    order = np.lexsort(boxes.T[::-1])
    wanted = expected.cells.boxes * 2**level
    assert np.allclose(boxes[order], wanted[np.lexsort(wanted.T[::-1])], atol=1e-3)


def test_the_tissue_mask_skips_regions_of_glass(tmp_path: Path, bccd_fields, monkeypatch) -> None:
    pixels = np.full((480, 2560, 3), 238, np.uint8)
    pixels[:, :640] = bccd_fields[0]
    path = write_slide(tmp_path / "s.ome.tif", [pixels], 0.075)
    ran: list[int] = []

    def counted(region):
        ran.append(region.index)
        return run_region(region)

    run_region = slide_module.run_region
    monkeypatch.setattr(slide_module, "run_region", counted)
    summary = predict_slide(BOXES, path, tmp_path / "out", tile=800, overlap=200, show_progress=False)
    assert summary.regions == 4 and ran == [0] and summary.regions_run == 1
    assert summary.tissue_mm2 == pytest.approx(640 * 480 * 0.075**2 / 1e6, rel=0.15)
    assert (tmp_path / "out" / "tissue" / "s.ome.png").is_file()


def _matched(found: np.ndarray, expected: np.ndarray, radius: float) -> tuple[int, int]:
    """Cells of ``found`` with no cell of ``expected`` within ``radius``, and the reverse."""
    distance = cdist(found, expected)
    return int((distance.min(axis=1) > radius).sum()), int((distance.min(axis=0) > radius).sum())


def test_border_cells_count_once_for_boxes(tmp_path: Path, bccd_fields) -> None:
    """Two BCCD fields side by side cut into two regions whose core border crosses cells: the same cells as the
    pair predicted whole, none twice."""
    pixels = np.concatenate(bccd_fields[:2], axis=1)
    path = write_slide(tmp_path / "s.ome.tif", [pixels], 0.075)
    summary = predict_slide(BOXES, path, tmp_path / "out", tile=800, overlap=200, tissue=False, show_progress=False)
    assert summary.grid == (1, 2)
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    whole = cytolens.load_model("blood-cells", device="cpu", backend="torch").predict([pixels])[0]
    centres = cells[["x", "y"]].to_numpy()
    assert (np.abs(centres[:, 0] - 640) < 60).sum() >= 3
    extra, missed = _matched(centres, whole.cells.centres, 8.0)
    assert extra <= 1 and missed <= 1 and abs(len(cells) - len(whole.cells)) <= 1
    distance = cdist(centres, centres)
    np.fill_diagonal(distance, np.inf)
    assert distance.min() > 10  # no cell twice


def test_border_cells_count_once_for_points(tmp_path: Path, chula_crops) -> None:
    """Four Chula fields 2 x 2, cut into 2 x 2 regions: as many cells on the core borders as the mosaic predicted
    whole has there, none twice (a point model's peaks move by a few pixels with the context, and a few low ones
    come and go anywhere)."""
    pixels = mosaic(chula_crops)
    path = write_slide(tmp_path / "s.tif", [pixels], None)
    summary = predict_slide(POINTS, path, tmp_path / "out", tile=512, overlap=128, tissue=False, show_progress=False)
    assert summary.grid == (2, 2)
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    whole = cytolens.load_model("rbc-morphology-points", device="cpu").predict([pixels])[0]
    centres = cells[["x", "y"]].to_numpy()
    extra, missed = _matched(centres, whole.cells.centres, 10.0)
    assert extra <= 0.12 * len(whole.cells) and missed <= 0.12 * len(whole.cells), (extra, missed)

    def on_borders(xy: np.ndarray) -> int:
        return int(((np.abs(xy[:, 0] - 400) < 20) | (np.abs(xy[:, 1] - 300) < 20)).sum())

    assert on_borders(centres) >= 10 and abs(on_borders(centres) - on_borders(whole.cells.centres)) <= 3
    distance = cdist(centres, centres)
    np.fill_diagonal(distance, np.inf)
    assert distance.min() >= 10  # the model's min_distance: no cell twice
    assert [name for name in cells.columns if name.startswith("p_")][:2] == ["p_normal cell", "p_macrocyte"]


class KilledError(Exception):
    """Stands for a kill in the middle of a slide."""


def test_a_resumed_run_skips_finished_regions_and_gives_the_same_cells(tmp_path: Path, chula_crops, monkeypatch):
    path = write_slide(tmp_path / "s.tif", [mosaic(chula_crops)], None)
    options = {"tile": 512, "overlap": 128, "tissue": False, "show_progress": False}
    with OutputRun(tmp_path / "straight") as run:
        predict_slides(POINTS, [path], run.path, **options)
    run_region, ran = slide_module.run_region, []

    def interrupted(region):
        if len(ran) == 2:
            raise KilledError
        ran.append(region.index)
        return run_region(region)

    monkeypatch.setattr(slide_module, "run_region", interrupted)
    out = tmp_path / "resumed"
    with pytest.raises(KilledError), OutputRun(out, resumable=True) as run:
        predict_slides(POINTS, [path], run.path, **options)
    assert not out.exists() and len(list((run.path / "parts" / "s").glob("region-*.parquet"))) == 2
    with pytest.raises(DataError, match=r"resumed used other tile; rerun without --resume"), OutputRun(
        out, resumable=True, resume=True
    ) as run:
        predict_slides(POINTS, [path], run.path, **{**options, "tile": 600}, resume=True)
    ran.clear()
    monkeypatch.setattr(slide_module, "run_region", lambda region: ran.append(region.index) or run_region(region))
    with OutputRun(out, resumable=True, resume=True) as run:
        (summary,) = predict_slides(POINTS, [path], run.path, **options, resume=True)
    assert ran == [2, 3] and (summary.regions_run, summary.regions_resumed) == (2, 2)
    assert pd.read_parquet(out / "cells.parquet").equals(pd.read_parquet(tmp_path / "straight" / "cells.parquet"))
    assert pd.read_csv(out / "cells.csv").equals(pd.read_csv(tmp_path / "straight" / "cells.csv"))
    assert not (out / "parts").exists()


def test_a_pipeline_classifies_the_cells_of_a_slide(tmp_path: Path, bccd_fields) -> None:
    classifier = tiny_classifier(tmp_path / "classifier.pt")
    path = write_slide(tmp_path / "s.ome.tif", [bccd_fields[1]], 0.075)
    spec = ModelSpec("blood-cells", str(classifier), backend="torch")
    summary = predict_slide(spec, path, tmp_path / "out", tissue=False, show_progress=False)
    cells = pd.read_parquet(tmp_path / "out" / "cells.parquet")
    assert set(summary.counts) == {"circular", "elongated", "other"} and len(cells) == sum(summary.counts.values())
    assert {"p_circular", "p_elongated", "p_other", "x1"} <= set(cells.columns)
    assert (tmp_path / "out" / "geojson" / "s.ome.geojson").is_file()


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_bad_slides_and_a_classifier_alone_are_refused_in_one_line(tmp_path: Path, bccd_fields) -> None:
    runner = CliRunner()
    good = write_slide(tmp_path / "good.ome.tif", [np.tile(bccd_fields[0], (4, 4, 1))], 0.075)
    truncated = tmp_path / "truncated.ome.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.tif"
    text.write_text("not a slide")
    jpeg = tmp_path / "field.jpg"
    jpeg.write_bytes(b"\xff\xd8")
    for path, problem in ((truncated, "truncated.ome.tif: cannot"), (text, "notes.tif: cannot read the slide"),
                          (jpeg, "field.jpg: not a slide")):
        result = runner.invoke(app, ["slide", str(path), "--out", str(tmp_path / path.stem), "--no-tissue-mask"])
        assert problem in _one_line_error(result)
    classifier = tiny_classifier(tmp_path / "classifier.pt")
    result = runner.invoke(app, ["slide", str(good), "--model", str(classifier), "--out", str(tmp_path / "c")])
    assert "a patch classifier alone finds no cells on a slide" in _one_line_error(result)


def test_a_resumed_run_over_other_slides_is_refused_naming_them(tmp_path: Path, chula_crops, monkeypatch) -> None:
    """The staging of a killed run over two slides holds the first one's outputs: a run resumed over the second
    alone would publish them, so it is refused in one line naming the folder and the slides, and nothing is lost."""
    first = write_slide(tmp_path / "first.tif", [chula_crops[0]], None)
    second = write_slide(tmp_path / "second.tif", [chula_crops[1]], None)
    options = {"tile": 512, "overlap": 128, "tissue": False, "show_progress": False}
    run_region = slide_module.run_region

    def killed_in_the_second(region):
        if region.slide == str(second):
            raise KilledError
        return run_region(region)

    monkeypatch.setattr(slide_module, "run_region", killed_in_the_second)
    out = tmp_path / "out"
    with pytest.raises(KilledError), OutputRun(out, resumable=True) as run:
        predict_slides(POINTS, [first, second], run.path, **options)
    monkeypatch.setattr(slide_module, "run_region", run_region)
    with pytest.raises(DataError) as refused, OutputRun(out, resumable=True, resume=True) as run:
        predict_slides(POINTS, [second], run.path, **options, resume=True)
    assert refused.value.path == out / "parts"
    assert str(refused.value).endswith(f"the run being resumed used other slides ({first.resolve()}, "
                                       f"{second.resolve()} where this run has {second.resolve()}); rerun without "
                                       "--resume")
    with OutputRun(out, resumable=True, resume=True) as run:
        summaries = predict_slides(POINTS, [first, second], run.path, **options, resume=True)
    assert [(summary.slide, summary.regions_resumed) for summary in summaries] == [("first", 1), ("second", 0)]
    assert set(pd.read_parquet(out / "cells.parquet")["slide"]) == {"first", "second"}


@pytest.mark.parametrize("verb", ["slide", "predict"])
@pytest.mark.parametrize("mpp", ["0", "-0.5"])
def test_an_mpp_of_zero_or_below_is_refused_in_one_line(tmp_path: Path, mpp: str, verb: str) -> None:
    result = CliRunner().invoke(app, [verb, str(tmp_path / "s.tif"), "--mpp", mpp, "--out", str(tmp_path / "o")])
    assert f"--mpp must lie in (0, inf], not {float(mpp)}" in _one_line_error(result)
    assert not any(tmp_path.iterdir())


def test_the_thumbnail_of_a_strip_tiff_is_read_in_bounded_pieces(tmp_path: Path, bccd_fields, monkeypatch) -> None:
    """A plain TIFF in strips of 8 full-width rows: no read holds more than a piece, none is as wide as the slide, and
    the thumbnail is the area average of the whole (exactly so when the slide's sides are multiples of the shrink).
    """
    pixels = np.concatenate(bccd_fields[:3], axis=1)  # 480 x 1920
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, pixels, rowsperstrip=8, photometric="rgb")
    monkeypatch.setattr("cytolens.io.slides.PIECE_PIXELS", 4096)
    with open_slide(path) as slide:
        read, reads = slide._reader.read, []
        monkeypatch.setattr(slide._reader, "read", lambda *where: reads.append(where[3:]) or read(*where))
        exact = slide.thumbnail(240)  # 8 slide pixels a thumbnail pixel
        assert reads and max(rows * cols for rows, cols in reads) <= 2 * 4096
        assert max(cols for _, cols in reads) < 1920
        assert np.array_equal(exact, cv2.resize(pixels, (240, 60), interpolation=cv2.INTER_AREA))
        near = slide.thumbnail(256)
    whole = cv2.resize(pixels, (256, 64), interpolation=cv2.INTER_AREA)
    assert near.shape == whole.shape and np.abs(near.astype(int) - whole).mean() < 3


def test_predict_refuses_a_whole_slide_in_one_line(tmp_path: Path, bccd_fields) -> None:
    """A TIFF over the pixel limit is a slide: alone, refused before any output; among images, it fails on its own
    line while the images are predicted."""
    path = write_slide(tmp_path / "s.ome.tif", [bccd_fields[0], resized(bccd_fields[0], 0.5)], 0.075)
    limit = ["--max-pixels", str(480 * 640 - 1)]
    result = CliRunner().invoke(app, [*limit, "predict", str(path), "--out", str(tmp_path / "out")])
    message = f"{path}: is a whole slide: use cytolens slide for slides (it reads them region by region)"
    assert message in _one_line_error(result)
    assert not (tmp_path / "out").exists()
    image = tmp_path / "field.png"
    cv2.imwrite(str(image), cv2.cvtColor(resized(bccd_fields[1], 0.5), cv2.COLOR_RGB2BGR))
    result = CliRunner().invoke(app, [*limit, "predict", str(path), str(image), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and message in result.output
    assert (tmp_path / "out" / "cells.csv").is_file()


def test_the_tissue_area_is_measured_before_the_mask_is_grown(tmp_path: Path, monkeypatch) -> None:
    """A 640 x 640 px square of stain on glass, on a 128 px thumbnail left sharp (no smoothing): its area is the
    square's (grown by 2 thumbnail pixels a side it would be 13 % more), and the regions around it are predicted."""
    pixels = np.full((1280, 1280, 3), 238, np.uint8)
    pixels[320:960, 320:960] = (200, 80, 160)
    path = write_slide(tmp_path / "s.ome.tif", [pixels], 0.5)
    monkeypatch.setattr(slide_module, "THUMBNAIL_SIDE", 128)
    monkeypatch.setattr(slide_module, "SMOOTH_UM", 0.0)
    ran: list[int] = []

    def no_cells(region):
        ran.append(region.index)
        return slide_module.RegionCells(region.index, Cells(boxes=np.zeros((0, 4)), scores=np.zeros(0)),
                                        np.zeros(0, bool))

    monkeypatch.setattr(slide_module, "run_region", no_cells)
    summary = predict_slide(BOXES, path, tmp_path / "out", show_progress=False)
    assert summary.tissue_mm2 == pytest.approx((640 * 0.5) ** 2 / 1e6, rel=0.001)
    assert 0 < len(ran) < summary.regions


def test_the_colour_warning_is_said_once_per_slide_naming_it(tmp_path: Path, chula_crops, caplog) -> None:
    """Chula RBC-12 fields lie far from the colours of blood-cells' training images: one warning for the slide's four
    regions, naming the slide (not the region's pixels)."""
    path = write_slide(tmp_path / "s.tif", [mosaic(chula_crops)], None)
    with caplog.at_level("WARNING", logger="cytolens"):
        predict_slide(BOXES, path, tmp_path / "out", tile=512, overlap=128, tissue=False, show_progress=False)
    warned = [record.getMessage() for record in caplog.records if "its colours lie" in record.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"{path}: its colours lie "), warned


def test_the_tissue_saturation_equals_scikit_images(bccd_fields) -> None:
    pixels = np.concatenate([bccd_fields[0], np.zeros_like(bccd_fields[0][:8])])  # black rows: saturation 0
    np.testing.assert_array_equal(saturation_of(pixels), rgb2hsv(pixels)[..., 1].astype(np.float32))


def test_an_aperio_svs_slide_is_read_at_its_levels_and_scale(tmp_path: Path, bccd_fields) -> None:
    pytest.importorskip("tiffslide")
    full = resized(bccd_fields[0], 2.0)
    path = write_svs(tmp_path / "s.svs", [full, resized(full, 0.5)], 0.0375)
    assert is_slide(path)
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.0375)
        assert slide.levels == [(960, 1280, 1.0), (480, 640, 2.0)]
        np.testing.assert_array_equal(slide.read(0, 100, 200, 64, 96), full[100:164, 200:296])
        np.testing.assert_array_equal(slide.read(1, 10, 20, 64, 96), resized(full, 0.5)[10:74, 20:116])
    summary = predict_slide(BOXES, path, tmp_path / "out", tissue=False, show_progress=False)
    assert (summary.level, summary.factor) == (1, pytest.approx(1.0))  # level 1 is at the model's 0.075 µm/px
    expected = cytolens.load_model("blood-cells", device="cpu", backend="torch").predict(
        [resized(full, 0.5)], mpp=0.075
    )[0]
    assert len(pd.read_parquet(tmp_path / "out" / "cells.parquet")) == len(expected.cells) > 10
