"""The review app: a FastAPI application serving one static page and a small JSON API over an annotation store.

The API (every route behind the guards of :mod:`cytolens.review.security`):

- ``GET /api/setup``: the classes (names and colours), the default reviewer, the uncertainty thresholds;
- ``GET /api/queue``: the images in review order (:func:`cytolens.store.queue.review_queue`) with their ids, and the
  progress (images reviewed / total);
- ``GET /api/images/{id}/pixels``: an image's pixels, found by its stored id only (its file checked to lie under
  the store's root);
- ``GET /api/images/{id}/cells``: its proposals and labels (:func:`cytolens.review.cells.image_cells`);
- ``PUT /api/images/{id}/labels``: save its whole label set with the version read
  (:func:`cytolens.store.labels.save_labels`); answers with the image's cells as saved, or 409 with the store's
  message when someone else saved since.

Errors are JSON ``{"detail": message}``: 400 for labels the store refuses, 404 for an unknown image or path, 409 for
a stale save; the guards of :mod:`cytolens.review.security` answer 401/403 (token), 413 (body size) and 400 (host).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cytolens.errors import DataError
from cytolens.io.images import read_image
from cytolens.review.cells import class_list, image_cells, store_classes
from cytolens.review.security import DEFAULT_MAX_BODY, BodyLimit, SecurityHeaders, TokenGuard
from cytolens.review.uncertainty import Uncertainty
from cytolens.store.database import Store
from cytolens.store.images import image_file
from cytolens.store.labels import LabelDraft, StaleWriteError, save_labels
from cytolens.store.queue import review_queue
from cytolens.store.schema import Image, Proposal

STATIC = Path(__file__).parent / "static"
"""The page, its script and its style."""
BROWSER_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Image files a browser shows as they are; others (TIFF) are sent as PNG."""
MAX_CELLS = 100_000
"""The most cells one save may hold."""

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CellIn(BaseModel):
    """A cell of a save: as :class:`cytolens.store.labels.LabelDraft`, with its centre as ``x``, ``y``."""

    x: float
    y: float
    box: tuple[float, float, float, float] | None = None
    class_name: Name | None = None
    proposal_id: int | None = None
    label_id: int | None = None


class SaveIn(BaseModel):
    """A save: the image's whole label set, the version it was read at, and who saves it."""

    version: int = Field(ge=0)
    reviewer: Name
    labels: list[CellIn] = Field(max_length=MAX_CELLS)


def _stored_image(store: Store, image_id: int) -> Image:
    with store.transaction() as session:
        image = session.get(Image, image_id)
    if image is None:
        raise HTTPException(404, f"no image {image_id} in the store")
    return image


def _drafts(store: Store, image: Image, save: SaveIn, classes: Sequence[str]) -> list[LabelDraft]:
    """The save's cells as drafts.

    Raises:
        DataError: If a cell's class is not one of ``classes`` or it names a proposal made on another image.

    """
    with store.transaction() as session:
        proposals = set(session.scalars(select(Proposal.id).where(Proposal.image_id == image.id)))
    drafts = []
    for number, cell in enumerate(save.labels, 1):
        if cell.class_name is not None and cell.class_name not in classes:
            raise DataError(image.path, f"label {number}: {cell.class_name!r} is not one of the review's classes")
        if cell.proposal_id is not None and cell.proposal_id not in proposals:
            raise DataError(image.path, f"label {number}: proposal {cell.proposal_id} was not made on this image")
        drafts.append(LabelDraft((cell.x, cell.y), cell.box, cell.class_name, cell.proposal_id, cell.label_id))
    return drafts


def _pixels(path: Path) -> Response:
    if path.suffix.lower() in BROWSER_SUFFIXES:
        return FileResponse(path)
    from PIL import Image as PILImage

    encoded = io.BytesIO()
    PILImage.fromarray(read_image(path)).save(encoded, format="PNG")
    return Response(encoded.getvalue(), media_type="image/png")


def create_app(
    store: Store,
    classes: Sequence[str] | None = None,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    reviewer: str | None = None,
    thresholds: Uncertainty = Uncertainty(),  # noqa: B008 (immutable)
    hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The review app of a store.

    Args:
        store: The open store (its images already added).
        classes: The classes a reviewer chooses from (keys 1-9 take the first nine); by default
            :func:`cytolens.review.cells.store_classes`.
        token: The access token every request must carry (see :class:`cytolens.review.security.TokenGuard`);
            ``None``: none (only for a server bound to a loopback address).
        max_body: The largest request body accepted, in bytes (larger: 413).
        reviewer: The reviewer's name the page starts with (the page may change it).
        thresholds: What makes a proposal uncertain (drawn red).
        hosts: The host names requests may be addressed to (e.g. the loopback names, against DNS rebinding);
            ``None``: any.

    Returns:
        The application, to serve with uvicorn.

    """
    names = list(store_classes(store) if classes is None else classes)
    app = FastAPI(title="cytolens review", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(DataError)
    async def refused(_request: Request, error: DataError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(StaleWriteError)
    async def stale(_request: Request, error: StaleWriteError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/setup")
    def setup() -> dict[str, Any]:
        return {
            "classes": class_list(names),
            "reviewer": reviewer,
            "alpha": thresholds.alpha,
            "beta": thresholds.beta,
        }

    @app.get("/api/queue")
    def queue() -> dict[str, Any]:
        entries = review_queue(store)
        with store.transaction() as session:
            ids = dict(session.execute(select(Image.path, Image.id)).tuples().all())
        return {
            "images": [
                {"id": ids[e.image], "name": e.image, "relevance": e.relevance, "version": e.version} for e in entries
            ],
            "reviewed": sum(entry.labelled for entry in entries),
            "total": len(entries),
        }

    @app.get("/api/images/{image_id:int}/pixels")
    def pixels(image_id: int) -> Response:
        image = _stored_image(store, image_id)
        try:
            path = image_file(store, image.path)
        except DataError:
            raise HTTPException(404, f"image {image_id} is not under the store's image folder") from None
        if not path.is_file():
            raise HTTPException(404, f"the file of image {image_id} is missing")
        return _pixels(path)

    @app.get("/api/images/{image_id:int}/cells")
    def cells(image_id: int) -> dict[str, Any]:
        return image_cells(store, _stored_image(store, image_id), thresholds)

    @app.put("/api/images/{image_id:int}/labels")
    def save(image_id: int, body: SaveIn) -> dict[str, Any]:
        image = _stored_image(store, image_id)
        save_labels(store, image.path, _drafts(store, image, body, names), body.version, body.reviewer)
        return image_cells(store, image, thresholds)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_body=max_body)
    if token is not None:
        app.add_middleware(TokenGuard, token=token)
    if hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    app.add_middleware(SecurityHeaders)
    return app
