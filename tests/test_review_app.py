"""The review app's JSON API and guards (cytolens.review.app, security), through FastAPI's TestClient.

The store holds two real BCCD images and a round of hand-made proposals (``review_store``); no model runs.
"""

from __future__ import annotations

import asyncio
import io
import shutil
from urllib.parse import unquote

import pytest
import typer
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import update
from typer.testing import CliRunner

from cytolens.cli.review import review
from cytolens.examples import path as examples_path
from cytolens.review.app import STATIC, create_app
from cytolens.review.proposals import unranked_images
from cytolens.review.security import CONTENT_SECURITY_POLICY
from cytolens.store.images import add_images
from cytolens.store.labels import read_labels
from cytolens.store.queue import review_queue
from cytolens.store.rounds import read_proposals
from cytolens.store.schema import Image
from review_store import CLASSES, CONFIDENT_BOX, FIRST, SECOND, UNCERTAIN_BOX, review_store

TOKEN = "s3cret-token"
THIRD = "BloodImage_00015.jpg"


@pytest.fixture
def store(tmp_path):
    with review_store(tmp_path) as opened:
        yield opened


@pytest.fixture
def client(store):
    return TestClient(create_app(store, reviewer="ann", max_body=10_000))


def first_image(client: TestClient) -> int:
    return client.get("/api/queue").json()["images"][0]["id"]


def as_drafts(labels: list[dict]) -> list[dict]:
    keys = ("x", "y", "box", "class_name", "proposal_id")
    return [{key: label[key] for key in keys} | {"label_id": label.get("label_id")} for label in labels]


def raw_get(app, raw_path: bytes) -> tuple[int, bytes]:
    """GET a path exactly as given (HTTP clients remove ``..`` segments before sending)."""

    async def run() -> list[dict]:
        messages = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": unquote(raw_path.decode()),
            "raw_path": raw_path,
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            messages.append(message)

        await app(scope, receive, send)
        return messages

    messages = asyncio.run(run())
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def test_queue_setup_and_cells(client):
    queue = client.get("/api/queue").json()
    assert [entry["name"] for entry in queue["images"]] == [FIRST, SECOND]  # relevance 12 before 3
    assert [entry["relevance"] for entry in queue["images"]] == [12.0, 3.0]
    assert (queue["reviewed"], queue["total"]) == (0, 2)
    setup = client.get("/api/setup").json()
    assert [c["name"] for c in setup["classes"]] == CLASSES  # the round's model's classes (blood-cells)
    assert setup["classes"][0]["colour"] == "#1f77b4"  # the overlays' palette
    assert (setup["reviewer"], setup["alpha"], setup["beta"]) == ("ann", 0.8, 0.9)
    cells = client.get(f"/api/images/{queue['images'][0]['id']}/cells").json()
    assert cells["image"] == {"id": queue["images"][0]["id"], "name": FIRST, "width": 640, "height": 480}
    assert (cells["version"], cells["labels"]) == (0, [])
    proposals = cells["proposals"]
    assert [p["box"] for p in proposals] == [list(UNCERTAIN_BOX), list(CONFIDENT_BOX), None]
    assert [p["uncertain"] for p in proposals] == [True, False, False]  # Uc 0.5 <= 0.8; the others above both
    assert proposals[0]["uncertainties"] == {"Ud": 0.95, "Uc": 0.5, "Ur": 0.0}


def test_pixels_are_the_stored_file_with_a_content_security_policy(client, store):
    response = client.get(f"/api/images/{first_image(client)}/pixels")
    assert response.status_code == 200
    assert response.content == (store.root / FIRST).read_bytes()
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    page = client.get("/")
    assert page.status_code == 200 and "content-security-policy" in page.headers
    assert "<script>" not in page.text  # no inline script: the page's only script is /static/review.js
    assert client.get("/static/review.js").status_code == 200
    assert "innerHTML" not in (STATIC / "review.js").read_text()  # store text is set with textContent only


def test_save_then_reload_keeps_the_labels(client, store):
    image = first_image(client)
    cells = client.get(f"/api/images/{image}/cells").json()
    labels = as_drafts([p | {"proposal_id": p["id"]} for p in cells["proposals"]])
    labels[0]["class_name"] = "WBC"  # relabel the uncertain cell
    del labels[2]  # delete the point
    labels.append({"x": 20.0, "y": 30.0, "box": None, "class_name": "Platelets", "proposal_id": None})
    saved = client.put(f"/api/images/{image}/labels", json={"version": 0, "reviewer": "bob", "labels": labels})
    assert saved.status_code == 200, saved.text
    again = client.get(f"/api/images/{image}/cells").json()
    assert again == saved.json() and again["version"] == 1 and again["saved_by"] == "bob"
    assert [(label["class_name"], label["proposal_id"]) for label in again["labels"]] == [
        ("WBC", cells["proposals"][0]["id"]),
        ("RBC", cells["proposals"][1]["id"]),
        ("Platelets", None),
    ]
    assert [label.labelled_by for label in read_labels(store, FIRST).labels] == ["bob"] * 3
    queue = client.get("/api/queue").json()
    assert (queue["reviewed"], [entry["name"] for entry in queue["images"]]) == (1, [SECOND, FIRST])


def test_stale_save_is_refused_with_the_stores_message(client, store):
    image = first_image(client)
    label = {"x": 20.0, "y": 30.0, "box": None, "class_name": "RBC", "proposal_id": None}
    first = client.put(f"/api/images/{image}/labels", json={"version": 0, "reviewer": "ann", "labels": [label]})
    assert first.is_success
    stale = client.put(f"/api/images/{image}/labels", json={"version": 0, "reviewer": "bob", "labels": []})
    assert stale.status_code == 409
    assert stale.json()["detail"].startswith(f"image {FIRST} was changed by ann at ")
    assert stale.json()["detail"].endswith("(version 1, not 0 as read); reload it")
    assert [label.class_name for label in read_labels(store, FIRST).labels] == ["RBC"]  # nothing written


def test_labels_the_store_cannot_take_are_refused(client):
    image = first_image(client)
    other = client.get("/api/queue").json()["images"][1]["id"]
    foreign = client.get(f"/api/images/{other}/cells").json()["proposals"][0]["id"]
    cases = {
        "'Neutrophil' is not one of the review's classes": {"x": 1.0, "y": 1.0, "class_name": "Neutrophil"},
        f"proposal {foreign} was not made on this image": {"x": 1.0, "y": 1.0, "proposal_id": foreign},
        "box (5.0, 5.0, 4.0, 8.0) is empty": {"x": 1.0, "y": 1.0, "box": [5.0, 5.0, 4.0, 8.0]},
    }
    for message, label in cases.items():
        refused = client.put(f"/api/images/{image}/labels", json={"version": 0, "reviewer": "ann", "labels": [label]})
        assert refused.status_code == 400 and message in refused.json()["detail"]
    nobody = client.put(f"/api/images/{image}/labels", json={"version": 0, "reviewer": " ", "labels": []})
    assert nobody.status_code == 422
    as_form = client.put(f"/api/images/{image}/labels", content=b"version=0", headers={"content-type": "text/plain"})
    assert as_form.status_code == 422  # only JSON is read (a cross-site form cannot post one)
    assert client.get(f"/api/images/{image}/cells").json()["version"] == 0


@pytest.mark.parametrize(
    "path",
    [
        b"/static/../../etc/passwd",
        b"/static/%2e%2e/%2e%2e/etc/passwd",
        b"/static/..%2f..%2f..%2fetc%2fpasswd",
        b"/static/%252e%252e/etc/passwd",
        b"/static/....//....//etc/passwd",
        b"/static//etc/passwd",
        b"/api/images/../../etc/passwd/pixels",
        b"/api/images/..%2f..%2fetc%2fpasswd/pixels",
        b"/api/images/99/pixels",
        b"/api/images/-1/pixels",
        b"/api/images/1.0/cells",
        b"/../../etc/passwd",
    ],
)
def test_path_traversal_is_refused(store, path):
    status, body = raw_get(create_app(store), path)
    assert status == 404
    assert b"root:" not in body


def test_an_image_stored_outside_the_root_is_not_served(client, store, tmp_path):
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((store.root / FIRST).read_bytes())
    (store.root / "link.jpg").symlink_to(outside)
    with store.transaction() as session:
        session.execute(update(Image).where(Image.path == FIRST).values(path="../secret.jpg"))
        session.execute(update(Image).where(Image.path == SECOND).values(path="link.jpg"))
    for entry in client.get("/api/queue").json()["images"]:
        assert client.get(f"/api/images/{entry['id']}/pixels").status_code == 404


def test_token_is_checked_on_every_request(store):
    client = TestClient(create_app(store, token=TOKEN))
    for path in ("/api/queue", "/api/images/1/pixels", "/static/review.js", "/"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-Cytolens-Token": "wrong"}).status_code == 403
        assert client.get(path, cookies={"cytolens_token": "wrong"}).status_code == 403
        assert client.get(path, headers={"X-Cytolens-Token": TOKEN}).status_code == 200
    assert client.get("/?token=wrong", follow_redirects=False).status_code == 403
    opened = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"  # the token leaves the address
    cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/api/queue").status_code == 200  # the cookie now carries it
    other_app = {"Cookie": f"a b=1; cytolens_token={TOKEN}"}  # a malformed cookie of another local app beside ours
    assert TestClient(create_app(store, token=TOKEN)).get("/api/queue", headers=other_app).status_code == 200


def test_oversized_bodies_are_refused_before_parsing(client):
    image = first_image(client)
    big = {"version": 0, "reviewer": "ann", "labels": [{"x": 1.0, "y": 1.0}] * 2000}
    assert client.put(f"/api/images/{image}/labels", json=big).status_code == 413

    def chunks():  # streamed without a Content-Length
        for _ in range(20):
            yield b" " * 1000

    streamed = client.put(f"/api/images/{image}/labels", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    lying = client.put(f"/api/images/{image}/labels", content=b"{}", headers={"content-length": "20000"})
    assert lying.status_code == 413
    assert client.get(f"/api/images/{image}/cells").json()["version"] == 0


def test_review_command_needs_a_token_off_loopback(store, tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.append((app, options)))
    app = typer.Typer()
    app.command()(review)
    runner = CliRunner()
    store_file, images = tmp_path / "labels.db", store.root
    where = ["--store", str(store_file), "--images", str(images)]
    local = runner.invoke(app, [*where, "--port", "8123", "--alpha", "0.4"])
    assert local.exit_code == 0, local.output
    assert "review at http://127.0.0.1:8123/ (Ctrl-C stops)" in local.output
    setup = TestClient(served[-1][0], base_url="http://127.0.0.1:8123").get("/api/setup")
    assert (setup.json()["alpha"], setup.json()["beta"]) == (0.4, 0.9)
    cells = TestClient(served[-1][0], base_url="http://localhost:8123").get("/api/images/1/cells").json()
    assert [p["uncertain"] for p in cells["proposals"]] == [False, False, False]  # Uc 0.5 > 0.4
    assert TestClient(served[-1][0], base_url="http://attacker.example").get("/api/queue").status_code == 400
    shared = runner.invoke(app, ["--store", str(store_file), "--images", str(images), "--host", "0.0.0.0"])
    assert shared.exit_code == 0, shared.output
    token = shared.output.split("?token=")[1].split()[0]
    assert len(token) >= 32
    assert served[-1][1] == {"host": "0.0.0.0", "port": 8000, "log_level": "warning", "log_config": None}
    guarded = TestClient(served[-1][0])
    assert guarded.get("/api/queue").status_code == 401
    assert guarded.get("/api/queue", headers={"X-Cytolens-Token": token}).status_code == 200
    empty = runner.invoke(app, ["--store", str(store_file), "--images", str(images), "--token", ""])
    assert empty.exit_code == 2


def test_review_model_ranks_the_images_without_proposals(store, tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr("uvicorn.run", lambda app, **options: None)
    shutil.copy(examples_path() / "JPEGImages" / THIRD, store.root / THIRD)
    app = typer.Typer()
    app.command()(review)
    arguments = ["--store", str(tmp_path / "labels.db"), "--images", str(store.root), "--model", "blood-cells"]
    result = CliRunner().invoke(app, [*arguments, "--passes", "2", "--dropout", "0.2"])
    assert result.exit_code == 0, result.output
    assert "1 image(s) added" in result.output and "round 2 recorded" in result.output
    assert unranked_images(store) == []
    proposals = read_proposals(store, THIRD)
    assert len(proposals) > 5 and all(set(p.uncertainties) == {"Ud", "Uc", "Ur"} for p in proposals)
    assert read_proposals(store, FIRST)[0].box == UNCERTAIN_BOX  # the images ranked before keep their round
    assert THIRD in [entry.image for entry in review_queue(store)]
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0 and "no image to rank" in again.output


def test_a_tiff_image_is_sent_as_png(client, store):
    PILImage.open(store.root / FIRST).save(store.root / "field.tif")
    add_images(store)
    entry = next(e for e in client.get("/api/queue").json()["images"] if e["name"] == "field.tif")
    response = client.get(f"/api/images/{entry['id']}/pixels")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert PILImage.open(io.BytesIO(response.content)).size == (640, 480)
