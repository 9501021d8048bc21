"""The review page end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

The app is served by uvicorn in a thread on a free 127.0.0.1 port, over a store with two real BCCD images and a
round of hand-made proposals (``review_store``). The test skips when ``/usr/bin/chromium`` is missing, unless
``CYTOLENS_REQUIRE_BROWSER=1`` (set by ``.ci/run``), in which case it fails.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from cytolens.review.app import create_app
from cytolens.store.labels import read_labels
from review_store import FIRST, review_store

CHROMIUM = Path("/usr/bin/chromium")
RED, GREEN, WBC = "#ff0000", "#00c000", "#1f77b4"
TOKEN = "browser-token"


@pytest.fixture
def chromium():
    if not CHROMIUM.is_file():
        message = f"no Chromium at {CHROMIUM} (Debian's chromium package) to test the review page in"
        if os.environ.get("CYTOLENS_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path, request):
    """The review app of a fresh store (with the access token the test is parametrised with, if any), served on a
    free local port: (address, store)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with review_store(tmp_path) as store:
        app = create_app(store, reviewer="tester", token=getattr(request, "param", None))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            thread.join(0.05)
        assert server.started, "the review server did not start"
        yield f"http://127.0.0.1:{port}", store
        server.should_exit = True
        thread.join(30)


def cell(page, index: int):
    return page.locator(f'#cells .cell[data-index="{index}"]')


def test_relabel_a_cell_reload_and_see_it_kept(chromium, served):
    address, store = served
    page = chromium.new_page(viewport={"width": 1200, "height": 800})
    errors = []  # uncaught script errors (a refused request is logged by the browser and shown by the page)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(address + "/")
    expect(page.locator("#status")).to_have_text("ready")
    assert page.text_content("#image-name") == FIRST  # the most relevant image first
    assert page.text_content("#progress-text") == "0 / 2 reviewed"
    assert page.locator("#cells .cell").count() == 3
    assert (cell(page, 0).get_attribute("data-kind"), cell(page, 0).get_attribute("stroke")) == ("uncertain", RED)
    assert (cell(page, 1).get_attribute("data-kind"), cell(page, 1).get_attribute("stroke")) == ("confident", GREEN)
    assert page.locator("#classes li").all_text_contents() == ["1 WBC", "2 RBC", "3 Platelets"]

    cell(page, 1).click()
    assert "selected" in cell(page, 1).get_attribute("class")
    page.keyboard.press("1")  # relabel as the first class, WBC
    expect(page.locator("#status")).to_have_text(re.compile("^saved"))
    expect(page.locator("#progress-text")).to_have_text("1 / 2 reviewed")
    assert [label.class_name for label in read_labels(store, FIRST).labels] == ["RBC", "WBC", "Platelets"]

    page.reload()
    expect(page.locator("#status")).to_have_text("ready")
    assert page.text_content("#image-name") == FIRST  # the address keeps the image
    labelled = page.locator('#cells .cell[data-kind="labelled"]')
    assert labelled.count() == 1
    assert (labelled.get_attribute("stroke"), labelled.locator("title").text_content()) == (WBC, "WBC")
    assert page.locator('#cells .cell[data-kind="uncertain"]').get_attribute("stroke") == RED  # still as proposed

    page.keyboard.press("p")  # add a point, then delete it
    box = page.locator("#viewer").bounding_box()
    page.mouse.click(box["x"] + 40, box["y"] + 40)
    expect(page.locator("#cells .cell")).to_have_count(4)
    expect(page.locator("#status")).to_have_text("saved (version 2)")
    page.keyboard.press("Delete")  # the added cell stays selected
    expect(page.locator("#status")).to_have_text("saved (version 3)")
    assert page.locator("#cells .cell").count() == 3

    image = page.evaluate("state.data.image.id")
    httpx.put(  # another reviewer saves behind the page's back: the page's next save is refused, and says so
        f"{address}/api/images/{image}/labels", json={"version": 3, "reviewer": "other", "labels": []}
    ).raise_for_status()
    cell(page, 0).click()
    page.keyboard.press("a")
    expect(page.locator("#status")).to_have_class("error")
    assert page.text_content("#status").startswith(f"image {FIRST} was changed by other at ")
    expect(page.locator("#cells .cell")).to_have_count(0)  # the page now shows the other reviewer's labels

    viewer = page.locator("#viewer").bounding_box()
    x, y = viewer["x"] + viewer["width"] / 2, viewer["y"] + viewer["height"] / 2
    page.keyboard.press("b")  # add a box by dragging
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 40, steps=5)
    page.mouse.up()
    expect(page.locator("#status")).to_have_text("saved (version 5)")
    added = read_labels(store, FIRST).labels[0]
    assert added.box is not None and added.box[2] - added.box[0] > added.box[3] - added.box[1] > 10
    before = page.get_attribute("#view", "transform")
    page.mouse.wheel(0, -300)  # zoom in about the cursor
    expect(page.locator("#view")).not_to_have_attribute("transform", before)
    zoomed = page.get_attribute("#view", "transform")
    page.mouse.move(x + 200, y + 200)  # drag the background: pan
    page.mouse.down()
    page.mouse.move(x + 100, y + 150, steps=5)
    page.mouse.up()
    assert page.get_attribute("#view", "transform") != zoomed
    assert read_labels(store, FIRST).version == 5  # panning saves nothing

    page.keyboard.press("n")
    expect(page.locator("#position")).to_have_text("image 2 of 2")
    assert errors == []


@pytest.mark.parametrize("served", [TOKEN], indirect=True)
def test_the_page_works_from_the_address_with_its_token(chromium, served):
    address, _store = served
    page = chromium.new_page()
    assert page.goto(address + "/").status == 401
    page.goto(f"{address}/?token={TOKEN}")
    expect(page.locator("#status")).to_have_text("ready")  # the cookie set from the address carries the token
    assert page.url.startswith(address + "/#image=")  # the token is no longer in the address
    expect(page.locator("#cells .cell")).to_have_count(3)
