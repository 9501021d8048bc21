"""``cytolens rank``: order a pool of images for annotation by how uncertain a model's MC-dropout passes are."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cytolens.cli.options import AlphaOption, BetaOption, DeviceOption, DropoutOption, JsonOption, PassesOption
from cytolens.review.uncertainty import ALPHA, BETA

if TYPE_CHECKING:
    from cytolens.inference.ranking import RankedImage
    from cytolens.store.database import Store

SHOWN = 10
"""How many of the best-ranked images the table shows."""


def rank(
    pool: Annotated[str, typer.Argument(help="A folder of images (or an image file, a glob pattern).", metavar="POOL")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled model name, checkpoint file or pipeline file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("cytolens-rank"),
    passes: PassesOption = 20,
    alpha: AlphaOption = ALPHA,
    beta: BetaOption = BETA,
    gamma: Annotated[float, typer.Option("--gamma", min=0.0, help="Weight of each rare-class candidate in R.")] = 10.0,
    rare: Annotated[
        str | None,
        typer.Option(
            "--rare",
            metavar="CLASS,...",
            help="The rare classes: a cell whose mean probability of one exceeds 0.2 is a rare-class candidate "
            "(Ur = 1). \\[default: none]",
        ),
    ] = None,
    by: Annotated[
        Literal["relevance", "entropy", "bald", "random"],
        typer.Option(
            "--by", help="Order the images by relevance R, or by the sum of their cells' entropy or BALD, or at random."
        ),
    ] = "relevance",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the dropout masks and of --by random.")] = 0,
    dropout: DropoutOption = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="An annotation store (a SQLite file, created if absent, or a SQLAlchemy URL) with POOL, a folder, "
            "as its image root: the images are added and this ranking recorded as a round, so that cytolens "
            "review shows them in this order.",
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look for images in sub-folders too.")] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Replace an earlier run in --out (whole, when this run ends).")
    ] = False,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Rank images for annotation: most informative first, by Monte-Carlo dropout over a model's heads.

    Per cell, over the passes: Ud (detection consistency), Uc (frequency of its modal class), Ur (rare-class
    candidate); per image R = #(Uc <= alpha) + #(Ud <= beta) + gamma * sum(Ur). Writes ranking.csv (image, R,
    entropy, bald, random, n_cells, n_uncertain, n_rare; best first by --by), cells.csv and GeoJSON of the
    plain prediction with Ud, Uc and Ur, and label-studio.json whose task scores are the ranking's (Label Studio
    sorts by them). --out is written as by cytolens predict: whole runs only. For research use only.
    """
    import logging
    from contextlib import ExitStack
    from dataclasses import replace

    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import DataError
    from cytolens.inference.model import load_model
    from cytolens.inference.ranking import RankSettings, rank_iter, ranking_table, record_ranking
    from cytolens.inference.sources import find_images
    from cytolens.io import label_studio
    from cytolens.io.atomic import write_text
    from cytolens.io.output_run import OutputRun
    from cytolens.progress import progress
    from cytolens.results.writers import PredictionWriter

    log = logging.getLogger("cytolens")
    if store is not None and not Path(pool).is_dir():
        raise typer.BadParameter(
            f"needs POOL to be a folder (the store's image root), not {pool}", param_hint="--store"
        )
    ids = find_images([pool], recursive=recursive)
    files = list(ids)
    served_from = label_studio.document_root()
    for file in files if served_from is not None else []:
        label_studio.local_files_url(file, served_from)  # refuse, before ranking, an image Label Studio could not show
    settings = RankSettings(passes, seed, dropout, alpha, beta, gamma, _names(rare), by)
    failed: list[str] = []
    ranked: list[RankedImage] = []
    with OutputRun(out, exist_ok=exist_ok, reads=files) as run, ExitStack() as closing:
        opened = None if store is None else closing.enter_context(_pool_store(store, Path(pool)))
        loaded = load_model(model, device=device)
        writer = PredictionWriter(
            run.path, loaded.classes, ["csv", "geojson", "label-studio"], ids=ids, served_from=served_from
        )
        try:
            for item in progress(rank_iter(loaded, files, settings), len(files), "ranking", enabled=not as_json):
                if isinstance(item, DataError):
                    log.error("%s", item)
                    failed.append(str(item.path))
                    continue
                writer.add(item.result)
                ranked.append(replace(item, result=writer.results[-1]))  # known by its id in every output
        finally:
            writer.close(task_scores={item.result.image_id: item.scores[by] for item in ranked})
            table = ranking_table(ranked, by)
            write_text(run.path / "ranking.csv", table.to_csv(index=False))
            if ranked:
                run.keep_partial()
        if opened is not None:
            number = record_ranking(opened, model, loaded.classes, ranked, by)
            log.info("%s: round %d recorded", store, number)
    top = table.head(SHOWN)
    if as_json:
        print_json({"images": len(ranked), "failed": failed, "by": by, "top": top.to_dict("records"), "out": str(out)})
    else:
        shown = ["image", "R", *([by] if by != "relevance" else []), "n_cells", "n_uncertain", "n_rare"]
        title = f"Top {len(top)} of {len(ranked)} images by {by} (written to {out})"
        print_table(title, shown, top[shown].itertuples(index=False))
        typer.echo("For research use only, not for diagnosis.")
    if failed:
        raise typer.Exit(1)


def _names(text: str | None) -> tuple[str, ...]:
    """The class names of a comma-separated list (none for ``None``)."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def _pool_store(location: str, root: Path) -> Store:
    """The annotation store at ``location`` with ``root`` as its image root, every image under it added (opened
    before the model runs, so that a store or image it refuses stops the run at once).
    """
    from cytolens.store.database import open_store
    from cytolens.store.images import add_images

    opened = open_store(location, root)
    try:
        add_images(opened, root)
    except BaseException:
        opened.close()
        raise
    return opened
