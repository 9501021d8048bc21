"""``cytolens review``: the review web app on an annotation store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytolens.cli.options import AlphaOption, BetaOption, DeviceOption, DropoutOption, PassesOption
from cytolens.review.security import DEFAULT_MAX_BODY
from cytolens.review.uncertainty import ALPHA, BETA


def review(
    store: Annotated[
        str, typer.Option("--store", help="The annotation store: a SQLite file (created if absent) or a database URL.")
    ],
    images: Annotated[
        Path,
        typer.Option("--images", help="The images' folder (the store's root); images not yet in the store are added."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Rank the images no round has proposed cells on with this model (MC-dropout passes, as cytolens rank) "
            "and record its proposals as a round, before serving.",
        ),
    ] = None,
    passes: PassesOption = 20,
    dropout: DropoutOption = None,
    alpha: AlphaOption = ALPHA,
    beta: BetaOption = BETA,
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on; other than a loopback address needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="The access token every request must carry (generated and printed when --host is not local).",
        ),
    ] = None,
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="The reviewer's name the page starts with.")
    ] = None,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, help="The largest request body accepted, in bytes.")
    ] = DEFAULT_MAX_BODY,
    device: DeviceOption = "auto",
) -> None:
    """Review the cells of a store's images in a browser: the most relevant image first, uncertain cells red.

    Keys on the page: a accept, 1-9 relabel, d delete, b add a box, p add a point, n next image.
    Every edit is saved in the store at once. Stop the server with Ctrl-C.
    """
    import uvicorn

    from cytolens.review.app import create_app
    from cytolens.review.security import LOOPBACK_NAMES, is_loopback, new_token
    from cytolens.review.uncertainty import Uncertainty
    from cytolens.store.database import open_store
    from cytolens.store.images import add_images

    if token is not None and not token.strip():
        raise typer.BadParameter("must not be empty", param_hint="--token")
    local = is_loopback(host)
    if token is None and not local:
        token = new_token()
    with open_store(store, images) as opened:
        typer.echo(f"{opened.name}: {len(add_images(opened))} image(s) added")
        if model is not None:
            from cytolens.inference.ranking import RankSettings
            from cytolens.review.proposals import propose

            number = propose(
                opened, model, RankSettings(passes=passes, dropout=dropout, alpha=alpha, beta=beta), device
            )
            typer.echo(f"{opened.name}: " + ("no image to rank" if number is None else f"round {number} recorded"))
        app = create_app(
            opened,
            token=token,
            max_body=max_body,
            reviewer=reviewer,
            thresholds=Uncertainty(alpha, beta),
            hosts=(*LOOPBACK_NAMES, host) if local else None,
        )
        shown = f"[{host}]" if ":" in host else host
        address = f"http://{shown}:{port}/" + (f"?token={token}" if token is not None else "")
        typer.echo(f"review at {address} (Ctrl-C stops)")
        uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None)
