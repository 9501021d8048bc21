"""Whole slides in bounded memory: the slide cut into overlapping regions, each predicted on its own.

1. The slide is read at the pyramid level nearest the model's µm/px from below in µm/px (the coarsest level at
   least as fine as the model: a coarser level is never enlarged when a finer one exists); each region is resized
   the rest of the way by the model's own predict path (:mod:`cytolens.inference.scale`).
2. A tissue or smear mask on a thumbnail (:func:`~cytolens.data.tissue.tissue_mask`) leaves out the regions
   whose core holds none of it (``tissue=False`` runs them all).
3. The level is cut into regions of ``tile`` model pixels overlapping by ``overlap`` (:func:`~cytolens.inference.
   tiles.tiles`: the cores partition the level). :func:`run_region` predicts one region (``Model.predict_iter`` on
   its pixels, the model's own tiling inside it) and returns its candidate cells in level-0 pixels; the regions run
   through :func:`~cytolens.inference.parallel.ordered_map` (in this process, or on Dask workers), and each
   finished region's cells go at once to a part file (:func:`~cytolens.results.slide_outputs.write_part`).
4. When every region is done, each region's cells are resolved against its neighbours' so that a cell on a
   border counts once (:mod:`cytolens.inference.slide_borders`), and streamed to the tables
   (:class:`~cytolens.results.slide_outputs.SlideTables`). Memory holds a region's pixels and three rows of
   regions' cells at most: it does not grow with the slide's height, and with its width only by those rows.

A run resumed (``resume=True``) keeps the part files of the regions finished before it was interrupted and runs
the others. It must be the same run: :func:`predict_slides` records its slides (in order), model and settings in
``parts/job.json`` and refuses a resumed run with other ones (rather than publish what the staging holds of slides
no longer asked for), and each slide's ``parts/<slide>/job.json`` records its file, model files and settings.

Point models find every peak of each region (``threshold_rel`` 0) and keep those above ``threshold_rel`` times the
maximum of the whole slide, as they do per image: one faint region does not lower the bar for itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cytolens.data.cells import Cells
from cytolens.data.tissue import SMOOTH_UM, grown, tissue_mask
from cytolens.errors import DataError, ModelError
from cytolens.inference.model import Model
from cytolens.inference.parallel import ModelSpec, ordered_map
from cytolens.inference.scale import RESCALE_TOLERANCE, scale_factor
from cytolens.inference.slide_borders import Candidates, kept
from cytolens.inference.tiles import Span, tiles
from cytolens.io.atomic import atomic_write
from cytolens.io.digest import file_digest
from cytolens.io.json_files import read_json, write_json
from cytolens.io.slides import Slide, open_slide
from cytolens.models.registry import resolve_model
from cytolens.progress import NOTE, progress
from cytolens.results.result import Result
from cytolens.results.slide_outputs import SlideTables, read_part, write_part

log = logging.getLogger(__name__)

DEFAULT_TILE = 2048
"""Side of a region, in model pixels."""
DEFAULT_OVERLAP = 256
"""Overlap of neighbouring regions, in model pixels: more than the largest cell, so that a cell on a core border
lies whole in both regions."""
THUMBNAIL_SIDE = 2048
"""Longest side of the thumbnail the tissue mask is found on."""
PICTURE_COMPRESSION = 1
"""zlib level of the tissue picture's PNG: a 2048 x 2048 thumbnail takes about 0.3 s at 1 and 1.7 s at PIL's default
6, for a file about a fifth larger (the same pixels)."""
REGION_PIXELS = "array0"
"""What the model's messages call a region's pixels (:meth:`~cytolens.inference.model.Model.predict_iter` names an
array by its place among the images given)."""
def choose_level(slide: Slide, model_mpp: float | None) -> int:
    """The coarsest pyramid level at least as fine as the model's µm/px (within
    :data:`~cytolens.inference.scale.RESCALE_TOLERANCE`); level 0 when none is, or either scale is unknown.
    """
    if slide.mpp is None or model_mpp is None:
        return 0
    fine = [level for level in range(len(slide.levels))
            if slide.level_mpp(level) <= model_mpp * (1 + RESCALE_TOLERANCE)]  # type: ignore[operator]
    return max(fine, default=0)


@dataclass(frozen=True)
class Region:
    """One region of a slide to predict, picklable (what a worker receives).

    Attributes:
        slide: The slide file.
        mpp: µm/px of level 0 given by the user (``None``: the file's).
        level: The pyramid level read.
        rows: Rows of the region and of its core, in the level's pixels.
        cols: Columns of the region and of its core.
        margin: Cells centred this far (level pixels) outside the core are kept as candidates too.
        level_mpp: µm/px the model is told the level has (it resizes the region by it).
        downsample: Level-0 pixels per level pixel, ``(y, x)``.
        index: The region's number (row by row).
        spec: The model.

    """

    slide: str
    mpp: float | None
    level: int
    rows: Span
    cols: Span
    margin: int
    level_mpp: float | None
    downsample: tuple[float, float]
    index: int
    spec: ModelSpec


@dataclass(frozen=True)
class RegionCells:
    """A region's candidate cells in level-0 slide pixels, and which of them its core owns."""

    index: int
    cells: Cells
    owned: np.ndarray


@functools.lru_cache(maxsize=4)
def _open(path: str, mpp: float | None) -> Slide:
    """The slide, opened once per process."""
    return open_slide(path, mpp)


def run_region(region: Region) -> RegionCells:
    """Predict one region: its candidate cells (centred in its core or within its margin) in level-0 pixels.

    Raises:
        DataError: Naming the slide, if the region cannot be read or predicted.

    """
    rows, cols = region.rows, region.cols
    pixels = _open(region.slide, region.mpp).read(
        region.level, rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start
    )
    result = next(iter(region.spec.load().predict_iter([pixels], mpp=region.level_mpp)))
    if isinstance(result, DataError):
        raise DataError(region.slide, f"region at x {cols.start}, y {rows.start} of level {region.level}: "
                                      f"{result.problem}")
    cells = result.cells
    x, y = cells.centres[:, 0] + cols.start, cells.centres[:, 1] + rows.start
    m = region.margin
    inside = ((x >= cols.core_start - m) & (x < cols.core_stop + m)
              & (y >= rows.core_start - m) & (y < rows.core_stop + m))
    owned = (x >= cols.core_start) & (x < cols.core_stop) & (y >= rows.core_start) & (y < rows.core_stop)
    cells = cells.select(inside)
    down_y, down_x = region.downsample
    scale, offset = np.array([down_x, down_y]), np.array([cols.start, rows.start], dtype=np.float64)
    boxes = None if cells.boxes is None else (cells.boxes + np.tile(offset, 2)) * np.tile(scale, 2)
    cells = dataclasses.replace(cells, centres=(cells.centres + offset) * scale, boxes=boxes)
    return RegionCells(region.index, cells, owned[inside])


@dataclass(frozen=True)
class SlideSummary:
    """What :func:`predict_slide` did on one slide (``as_dict`` for ``run.json``)."""

    slide: str
    path: str
    shape: tuple[int, int]
    level: int
    mpp: float | None
    level_mpp: float | None
    factor: float
    grid: tuple[int, int]
    regions: int
    regions_run: int
    regions_resumed: int
    tissue_mm2: float | None
    counts: dict[str, int]
    seconds: float

    @property
    def megapixels_per_second(self) -> float:
        """Level-0 megapixels of the slide per second of the run."""
        return self.shape[0] * self.shape[1] / 1e6 / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        """JSON-like fields."""
        return {**dataclasses.asdict(self), "megapixels_per_second": round(self.megapixels_per_second, 3)}


def _fingerprint(spec: ModelSpec, path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the run it resumes: model files, slide file and settings."""
    models = {"model": spec.source, "model_sha256": file_digest(resolve_model(spec.source)),
              "classifier": spec.classifier, "backend": spec.backend, "model_settings": dict(spec.settings)}
    if spec.classifier is not None:
        models["classifier_sha256"] = file_digest(resolve_model(spec.classifier))
    return {**models, "slide": str(path.resolve()), "slide_sha256": file_digest(path), **settings}


def _start_parts(folder: Path, fingerprint: dict[str, Any], resume: bool) -> set[int]:
    """The regions already done (their part files) in ``folder``, after checking that a resumed run matches."""
    _start_job(folder, fingerprint, resume)
    return {int(part.stem.split("-")[1]) for part in folder.glob("region-*.parquet")}


def _start_job(folder: Path, record: dict[str, Any], resume: bool) -> None:
    """Start ``folder`` afresh with ``job.json`` holding ``record``; or, resuming, check that the run being resumed
    recorded the same there (a folder without ``job.json`` is started afresh).

    Raises:
        DataError: Naming ``folder``, if the run being resumed recorded something else.

    """
    job = folder / "job.json"
    if not resume and folder.exists():
        shutil.rmtree(folder)
    if not job.exists():
        write_json(job, record, indent=1)
        return
    before = read_json(job, "job file")
    changed = sorted(key for key in set(before) | set(record) if before.get(key) != record.get(key))
    if "slides" in changed:  # name them: the slide list is what a user most easily gets wrong
        changed[changed.index("slides")] = (f"slides ({', '.join(before.get('slides') or [])} where this run has "
                                            f"{', '.join(record['slides'])})")
    if changed:
        raise DataError(folder, f"the run being resumed used other {', '.join(changed)}; rerun without --resume")


def _tissue_picture(thumbnail: np.ndarray, mask: np.ndarray, path: Path) -> None:
    """The thumbnail with glass dimmed, as a PNG (at :data:`PICTURE_COMPRESSION`)."""
    picture = thumbnail.copy()
    picture[~mask] = picture[~mask] // 3
    with atomic_write(path, "wb") as handle:
        Image.fromarray(picture).save(handle, format="PNG", compress_level=PICTURE_COMPRESSION)


def _smoothing(slide: Slide, model_mpp: float | None, thumbnail_width: int) -> int:
    """Half-side (thumbnail pixels) of the tissue mask's smoothing: :data:`~cytolens.data.tissue.SMOOTH_UM` (1% of
    the thumbnail when the scale is unknown).
    """
    microns = (slide.mpp or model_mpp or 0.0) * slide.shape[1] / thumbnail_width
    return round(SMOOTH_UM / microns) if microns else thumbnail_width // 100


def _pixel_range(start: int, stop: int, scale: float) -> slice:
    """Level pixels ``[start, stop)`` as thumbnail pixels (at least one)."""
    low = math.floor(start * scale)
    return slice(low, max(low + 1, math.ceil(stop * scale)))


class _OncePerSlide(logging.Filter):
    """The model's messages about a region's pixels (which it names ``array0``: a region is predicted as an array)
    said once per slide, naming the slide: the first of each kind (its text with numbers left out), e.g. the colour
    warning.
    """

    def __init__(self, slide: Path) -> None:
        super().__init__()
        self.slide = slide
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep ``record`` (naming the slide) unless it is about a region and its kind was said for this slide."""
        text = record.getMessage()
        if not text.startswith(f"{REGION_PIXELS}: "):
            return True
        kind = re.sub(r"[\d.]+", "#", text)
        if kind in self.said:
            return False
        self.said.add(kind)
        record.msg, record.args = f"{self.slide}{text[len(REGION_PIXELS):]}", None
        return True


def _neighbours(index: int, grid: tuple[int, int]) -> list[int]:
    row, col = divmod(index, grid[1])
    return [r * grid[1] + c for r in range(row - 1, row + 2) for c in range(col - 1, col + 2)
            if (r, c) != (row, col) and 0 <= r < grid[0] and 0 <= c < grid[1]]


def predict_slide(
    spec: ModelSpec,
    path: str | Path,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = False,
    tissue: bool = True,
    tables: SlideTables | None = None,
    slide_id: str | None = None,
    show_progress: bool = True,
) -> SlideSummary:
    """Find the cells of a whole slide, region by region, and write them as they come.

    Args:
        spec: The model (a box or point model, or a pipeline; not a patch classifier alone).
        path: The slide (see :func:`~cytolens.io.slides.open_slide`).
        out_dir: Folder of the run: part files go to ``parts/<slide id>/``, the tissue picture to
            ``tissue/<slide id>.png``, and the tables (when ``tables`` is not given) beside them.
        mpp: µm/px of level 0, when the file states none (or to override it).
        tile: Side of a region, in model pixels.
        overlap: Overlap of neighbouring regions, in model pixels (more than the largest cell).
        workers: Local processes (see :func:`~cytolens.inference.parallel.ordered_map`).
        scheduler: Address of a running Dask scheduler.
        resume: Keep the regions an interrupted run of the same model, slide and settings finished.
        tissue: Skip the regions without tissue or smear (``False``: run every region).
        tables: Where the cells go (several slides in one set of tables); default: new tables in ``out_dir``.
        slide_id: The slide's name in the outputs (default: its file's stem).
        show_progress: Show a progress bar with the time left.

    Returns:
        The summary: level, scale, regions run, tissue area, counts per class, time.

    Raises:
        ModelError: If the model is a patch classifier alone.
        DataError: If the slide cannot be read, ``tile`` and ``overlap`` do not fit, or a resumed run differs.

    """
    started = time.perf_counter()
    path, out_dir = Path(path), Path(out_dir)
    slide_id = slide_id or path.stem
    model = _cell_finder(spec)
    if not 0 <= overlap < tile // 2:
        raise DataError(path, f"region overlap {overlap} must be at least 0 and below half the tile size {tile}")
    model_mpp = model.card.input.mpp
    slide = open_slide(path, mpp)
    try:
        level, area, thumbnail = choose_level(slide, model_mpp), None, None
        if tissue:
            thumbnail = slide.thumbnail(THUMBNAIL_SIDE)
            area = tissue_mask(thumbnail, smooth=_smoothing(slide, model_mpp, thumbnail.shape[1]))
    finally:
        slide.close()
    if slide.mpp is None and model_mpp is not None:
        log.log(NOTE, "%s: states no µm/px: taken at the model's %.3g µm/px (give --mpp to resize it)", path,
                model_mpp)
    level_mpp = slide.level_mpp(level) or model_mpp
    factor = scale_factor(level_mpp, model_mpp)
    height, width, _ = slide.levels[level]
    downsample = (slide.shape[0] / height, slide.shape[1] / width)
    grid = list(tiles(height, width, max(1, round(tile / factor)), round(overlap / factor)))
    columns = len({cols for _, cols in grid})
    shape = (len(grid) // columns, columns)
    margin = round(overlap / factor) // 4
    regions = [Region(str(path), mpp, level, rows, cols, margin, level_mpp, downsample, index, _all_peaks(spec, model))
               for index, (rows, cols) in enumerate(grid)]
    if area is not None and thumbnail is not None:  # regions chosen on the grown mask, the area measured on the mask
        mask = grown(area)
        scale_y, scale_x = thumbnail.shape[0] / height, thumbnail.shape[1] / width
        regions = [region for region in regions if mask[
            _pixel_range(region.rows.core_start, region.rows.core_stop, scale_y),
            _pixel_range(region.cols.core_start, region.cols.core_stop, scale_x)].any()]
        _tissue_picture(thumbnail, mask, out_dir / "tissue" / f"{slide_id}.png")
        area_px = area.mean() * slide.shape[0] * slide.shape[1]
    else:
        area_px = float(slide.shape[0] * slide.shape[1])
    tissue_mm2 = None if slide.mpp is None else float(area_px * slide.mpp**2 / 1e6)
    settings = {"mpp": mpp, "tile": tile, "overlap": overlap, "tissue": tissue, "level": level}
    parts = out_dir / "parts" / slide_id
    done = _start_parts(parts, _fingerprint(spec, path, settings), resume)
    todo = [region for region in regions if region.index not in done]
    found = ordered_map(run_region, todo, workers=workers, scheduler=scheduler)
    once, model_log = _OncePerSlide(path), logging.getLogger(Model.__module__)
    model_log.addFilter(once)
    try:
        for cells in progress(found, len(todo), f"{slide_id}: regions", enabled=show_progress):
            write_part(parts / f"region-{cells.index:06d}.parquet", cells.cells, cells.owned)
    finally:
        model_log.removeFilter(once)
    own_tables = tables is None
    tables = tables or _tables(out_dir, model)
    try:
        counts = _resolve(parts, [region.index for region in regions], shape, tables, model, slide_id, path,
                          radius=_radius(model, factor, downsample))
        tables.finish(slide_id, counts, tissue_mm2)
    finally:
        if own_tables:
            tables.close()
    return SlideSummary(
        slide_id, str(path), slide.shape, level, slide.mpp, level_mpp, factor, shape, len(grid), len(todo),
        len(regions) - len(todo), tissue_mm2, counts, time.perf_counter() - started,
    )


def _cell_finder(spec: ModelSpec) -> Model:
    """The model of ``spec``, refused in one line when it is a patch classifier alone (it finds no cells)."""
    model = spec.load()
    if model.task == "patches":
        raise ModelError(f"{spec.source}: a patch classifier alone finds no cells on a slide; give a detector as "
                         "--model and the classifier as --classifier")
    return model


def _tables(out_dir: Path, model: Model) -> SlideTables:
    """New tables for the cells ``model`` finds."""
    from cytolens.inference.pipeline import Pipeline

    boxes = model.task == "boxes"
    probabilities = model.task == "points" or isinstance(model, Pipeline)
    return SlideTables(out_dir, model.classes, boxes, probabilities, model.card.report.ratios)


def _all_peaks(spec: ModelSpec, model: Model) -> ModelSpec:
    """The spec the regions run with: a point model's peaks relative to the maximum are kept (``threshold_rel``
    0), for :func:`_resolve` to threshold them against the maximum of the whole slide, as one image would be.
    """
    if not getattr(model.thresholds, "threshold_rel", 0.0):
        return spec
    thresholds = {**spec.settings.get("thresholds", {}), "threshold_rel": 0.0}
    return dataclasses.replace(spec, settings={**spec.settings, "thresholds": thresholds})


def _radius(model: Model, factor: float, downsample: tuple[float, float]) -> float:
    """Level-0 pixels within which two regions' point cells are one: the model's smallest distance between cells."""
    distance = getattr(model.thresholds, "min_distance", 0)
    return float(distance) / factor * max(downsample)


def _resolve(
    parts: Path, indices: Sequence[int], grid: tuple[int, int], tables: SlideTables, model: Model, slide_id: str,
    path: Path, radius: float,
) -> dict[str, int]:
    """Stream each region's cells that stay (against its neighbours') to ``tables``; the counts per class."""
    done = set(indices)
    cache: dict[int, Candidates] = {}
    files = {index: parts / f"region-{index:06d}.parquet" for index in indices}
    relative = getattr(model.thresholds, "threshold_rel", 0.0)
    if relative:  # a point model: peaks above threshold_rel times the slide's maximum (the regions kept them all)
        maximum = max((float(cells.scores[owned].max(initial=0.0)) for cells, owned in map(read_part, files.values())),
                      default=0.0)
        floor = relative * maximum
    else:
        floor = -np.inf

    def candidates(index: int) -> Candidates:
        if index not in cache:
            cells, owned = read_part(files[index])
            high = cells.scores > floor
            cache[index] = Candidates(cells.select(high), owned[high], index)
        return cache[index]

    counts = dict.fromkeys(model.classes, 0)
    tables.start(slide_id)
    for index in indices:
        for old in [key for key in cache if key // grid[1] < index // grid[1] - 1]:
            del cache[old]
        mine = candidates(index)
        others = [candidates(other) for other in _neighbours(index, grid) if other in done]
        cells = mine.cells.select(kept(mine, others, radius))
        result = Result(path, 0, 0, slide_id, cells=cells, classes=model.classes)
        tables.add(result)
        for name, count in result.counts().items():
            counts[name] += count
    return counts


def predict_slides(
    spec: ModelSpec, paths: Sequence[str | Path], out_dir: str | Path, **options: Any
) -> list[SlideSummary]:
    """:func:`predict_slide` on each slide into one set of tables in ``out_dir``, and ``run.json``.

    Args:
        spec: The model.
        paths: The slides; their names in the outputs are their stems, made unique with ``-2``, ``-3``...
        out_dir: The run's folder.
        options: Options of :func:`predict_slide` (``mpp``, ``tile``, ``overlap``, ``workers``, ``scheduler``,
            ``resume``, ``tissue``, ``show_progress``).

    """
    out_dir = Path(out_dir)
    model = _cell_finder(spec)
    run_settings = {  # what makes a run another run, as it takes effect (a resumed run must have the same)
        "mpp": options.get("mpp"), "tile": options.get("tile", DEFAULT_TILE),
        "overlap": options.get("overlap", DEFAULT_OVERLAP), "tissue": options.get("tissue", True),
    }
    _start_job(out_dir / "parts", {
        "slides": [str(Path(path).resolve()) for path in paths], "model": spec.source, "classifier": spec.classifier,
        "backend": spec.backend, "model_settings": dict(spec.settings), **run_settings,
    }, options.get("resume", False))
    tables = _tables(out_dir, model)
    summaries, taken = [], set()
    try:
        for path in paths:
            slide_id, number = Path(path).stem, 1
            while slide_id in taken:
                number += 1
                slide_id = f"{Path(path).stem}-{number}"
            taken.add(slide_id)
            summaries.append(predict_slide(spec, path, out_dir, tables=tables, slide_id=slide_id, **options))
    finally:
        tables.close()
    shutil.rmtree(out_dir / "parts")  # the tables hold every cell now
    settings = {key: value for key, value in options.items() if key not in ("show_progress", "scheduler")}
    write_json(out_dir / "run.json", {
        "model": spec.source, "classifier": spec.classifier, "backend": spec.backend, "device": spec.device,
        "model_settings": dict(spec.settings), "settings": settings,
        "model_sha256": file_digest(resolve_model(spec.source)),
        "slides": [summary.as_dict() for summary in summaries],
    }, indent=1)
    return summaries


__all__ = [
    "DEFAULT_OVERLAP", "DEFAULT_TILE", "Region", "RegionCells", "SlideSummary", "choose_level", "predict_slide",
    "predict_slides", "run_region",
]
