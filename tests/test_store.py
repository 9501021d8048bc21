"""The annotation store (cytolens.store) on SQLite and on PostgreSQL, with a few real Chula RBC-12 images.

The PostgreSQL case reads its server's URL from ``CYTOLENS_TEST_POSTGRES_URL`` (e.g.
``postgresql+psycopg://cytolens:cytolens@127.0.0.1:5432/cytolens_test``; ``.ci/run`` starts a server and sets
it); it skips when unset, and fails under CI (``CYTOLENS_REQUIRE_DATASETS=1``). Each test gets a schema of its
own on that server, dropped after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, func, make_url, select, text

from conftest import dataset_path
from cytolens.data.annotations import AnnotatedImage
from cytolens.data.cells import UNCLASSIFIED, Cells
from cytolens.errors import DataError
from cytolens.io import chula
from cytolens.models.registry import bundled_models
from cytolens.store.database import open_store
from cytolens.store.dataset import read_dataset
from cytolens.store.images import add_images, image_file
from cytolens.store.labels import LabelDraft, StaleWriteError, read_labels, save_labels
from cytolens.store.queue import review_queue
from cytolens.store.rounds import add_model_version, read_proposals, record_round
from cytolens.store.schema import Label

POSTGRES_URL = "CYTOLENS_TEST_POSTGRES_URL"
CHULA_IMAGES = ("10", "100", "101")


def postgres_url() -> str:
    """The test server's URL; skips when unset (fails under CI)."""
    url = os.environ.get(POSTGRES_URL)
    if not url:
        message = f"no PostgreSQL server to test the store on (set {POSTGRES_URL})"
        if os.environ.get("CYTOLENS_REQUIRE_DATASETS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """Where a fresh store goes: a SQLite file, or a new schema on the PostgreSQL test server."""
    if request.param == "sqlite":
        yield str(tmp_path / "labels.db")
        return
    url = make_url(postgres_url())
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="module")
def chula_source() -> Path:
    return dataset_path("chula-rbc-12")


@pytest.fixture
def images(chula_source, tmp_path) -> Path:
    """A small Chula RBC-12 folder (Dataset/ and Label/) with three real images."""
    folder = tmp_path / "chula"
    for part, suffix in (("Dataset", ".jpg"), ("Label", ".txt")):
        (folder / part).mkdir(parents=True)
        for stem in CHULA_IMAGES:
            shutil.copy(chula_source / part / f"{stem}{suffix}", folder / part / f"{stem}{suffix}")
    return folder


@pytest.fixture
def store(location, images):
    with open_store(location, images / "Dataset") as opened:
        add_images(opened)
        yield opened


def test_add_images_records_size_and_hash(location, images):
    root = images / "Dataset"
    (root / "sub").mkdir()
    shutil.copy(root / "10.jpg", root / "sub" / "copy.jpg")
    with open_store(location, root) as store:
        assert add_images(store) == ["10.jpg", "100.jpg", "101.jpg", "sub/copy.jpg"]
        assert add_images(store) == []  # unchanged images are skipped
    with open_store(location, root) as store:  # reopened: migrating again changes nothing
        queue = review_queue(store)
        assert [entry.image for entry in queue] == ["10.jpg", "100.jpg", "101.jpg", "sub/copy.jpg"]
        assert not any(entry.labelled for entry in queue)
        with store.transaction() as session:
            rows = session.execute(text("SELECT path, width, height, sha256 FROM images ORDER BY path")).all()
        path, width, height, digest = rows[0]
        assert (width, height) == Image.open(root / path).size == (640, 480)
        assert digest == hashlib.sha256((root / path).read_bytes()).hexdigest()
        assert rows[3].sha256 == digest
        (root / "100.jpg").unlink()  # the copies are read-only, as the shared datasets are
        shutil.copy(root / "101.jpg", root / "100.jpg")
        with pytest.raises(DataError, match=r"100\.jpg: changed since it was added"):
            add_images(store)


def test_save_and_read_labels(store):
    first = read_labels(store, "10.jpg")
    assert (first.version, first.saved_by, first.labels) == (0, None, ())
    drafts = [
        LabelDraft((10.5, 20.5), class_name="macrocyte"),
        LabelDraft((30.0, 40.0), (25.0, 35.0, 35.0, 45.0), "teardrop"),
        LabelDraft((50.0, 60.0)),
    ]
    assert save_labels(store, "10.jpg", drafts, 0, "ann") == 1
    saved = read_labels(store, "10.jpg")
    assert (saved.version, saved.saved_by) == (1, "ann")
    assert [(label.centre, label.box, label.class_name) for label in saved.labels] == [
        ((10.5, 20.5), None, "macrocyte"),
        ((30.0, 40.0), (25.0, 35.0, 35.0, 45.0), "teardrop"),
        ((50.0, 60.0), None, None),
    ]
    assert all(label.labelled_by == "ann" and label.labelled_at == saved.saved_at for label in saved.labels)
    kept, relabelled, _deleted = saved.labels
    edits = [kept.draft(), LabelDraft(relabelled.centre, relabelled.box, "schistocyte", label_id=relabelled.id)]
    edits.append(LabelDraft((70.0, 80.0), class_name="normal cell"))
    assert save_labels(store, "10.jpg", edits, 1, "bob") == 2
    edited = read_labels(store, "10.jpg")
    assert [label.class_name for label in edited.labels] == ["macrocyte", "schistocyte", "normal cell"]
    assert edited.labels[0] == kept  # an unchanged label keeps its row, who and when
    assert {label.labelled_by for label in edited.labels[1:]} == {"bob"}
    with store.transaction() as session:  # nothing is erased: changed and removed labels are marked deleted
        deleted = session.scalars(select(Label.class_name).where(Label.deleted).order_by(Label.id)).all()
    assert deleted == ["teardrop", None]
    with pytest.raises(DataError, match="label 1: label 999 is not a current label"):
        save_labels(store, "10.jpg", [LabelDraft((1.0, 1.0), label_id=999)], 2, "bob")
    with pytest.raises(DataError, match="label 1 x"):
        save_labels(store, "10.jpg", [LabelDraft((float("nan"), 1.0))], 2, "bob")
    with pytest.raises(DataError, match="label 2: box .* is empty"):
        save_labels(store, "10.jpg", [LabelDraft((1.0, 1.0)), LabelDraft((5.0, 5.0), (6.0, 6.0, 4.0, 8.0))], 2, "x")
    with pytest.raises(DataError, match=r"label 1: centre \(-1.0, 2.0\) leaves the \d+x\d+ image"):
        save_labels(store, "10.jpg", [LabelDraft((-1.0, 2.0))], 2, "x")
    with pytest.raises(DataError, match=r"label 2: box \(5.0, 5.0, 6.0, 1000000000.0\) leaves the 640x480 image"):
        save_labels(store, "10.jpg", [LabelDraft((1.0, 1.0)), LabelDraft((5.5, 5.5), (5.0, 5.0, 6.0, 1e9))], 2, "x")
    with pytest.raises(DataError, match="nowhere.jpg: not an image of the annotation store"):
        read_labels(store, "nowhere.jpg")
    assert read_labels(store, "10.jpg") == edited  # the refused saves wrote nothing


def test_stale_write_is_refused_and_writes_nothing(store):
    ann, bob = read_labels(store, "100.jpg"), read_labels(store, "100.jpg")
    save_labels(store, "100.jpg", [LabelDraft((5.0, 5.0), class_name="normal cell")], ann.version, "ann")
    after_ann = read_labels(store, "100.jpg")
    with pytest.raises(StaleWriteError) as refused:
        save_labels(store, "100.jpg", [LabelDraft((9.0, 9.0), class_name="teardrop")], bob.version, "bob")
    when = f"{after_ann.saved_at:%Y-%m-%d %H:%M:%S}"
    assert str(refused.value) == f"image 100.jpg was changed by ann at {when} UTC (version 1, not 0 as read); reload it"
    assert read_labels(store, "100.jpg") == after_ann
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Label)) == 1


def test_racing_saves_one_wins(store):
    barrier, outcomes = threading.Barrier(2), {}

    def review(who: str) -> None:
        barrier.wait()
        try:
            outcomes[who] = save_labels(store, "101.jpg", [LabelDraft((1.0, 1.0), class_name=who)], 0, who)
        except StaleWriteError as error:
            outcomes[who] = error

    threads = [threading.Thread(target=review, args=(who,)) for who in ("ann", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    winner = next(who for who, outcome in outcomes.items() if outcome == 1)
    loser = ({"ann", "bob"} - {winner}).pop()
    assert isinstance(outcomes[loser], StaleWriteError)
    assert str(outcomes[loser]).startswith(f"image 101.jpg was changed by {winner} at ")
    labelling = read_labels(store, "101.jpg")
    assert (labelling.version, [label.class_name for label in labelling.labels]) == (1, [winner])


WRITER = textwrap.dedent(
    """
    import sys, time
    from sqlalchemy import event
    from cytolens.store.database import open_store
    from cytolens.store.labels import LabelDraft, save_labels

    store = open_store(sys.argv[1], sys.argv[2])
    save_labels(store, "101.jpg", [LabelDraft((1.0, 2.0), class_name="first")], 0, "writer")

    @event.listens_for(store.engine, "after_cursor_execute")
    def pause_mid_save(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO LABELS"):
            print("mid-save", flush=True)  # the version moved on, rows written, nothing committed: wait to be killed
            time.sleep(600)

    drafts = [LabelDraft((float(i), float(i)), class_name="second") for i in range(5)]
    save_labels(store, "101.jpg", drafts, 1, "writer")
    """
)


def test_labels_survive_a_killed_writer(location, images):
    root = images / "Dataset"
    with open_store(location, root) as store:
        add_images(store)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, location, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline() == "mid-save\n"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    with open_store(location, root) as store:
        labelling = read_labels(store, "101.jpg")
        assert (labelling.version, labelling.saved_by) == (1, "writer")
        assert [(label.centre, label.class_name) for label in labelling.labels] == [((1.0, 2.0), "first")]
        with store.transaction() as session:
            assert session.scalars(select(Label.class_name)).all() == ["first"]
        save_labels(store, "101.jpg", [], labelling.version, "after")  # the killed writer holds no lock
        assert read_labels(store, "101.jpg").version == 2


def test_dataset_round_trip(store, images):
    original = chula.read(images)
    assert [image.image_id for image in original] == list(CHULA_IMAGES)
    for image in original.images[:2]:
        drafts = [
            LabelDraft(tuple(centre), class_name=original.classes[label])
            for centre, label in zip(image.cells.centres.tolist(), image.cells.labels, strict=True)
        ]
        save_labels(store, f"{image.image_id}.jpg", drafts, 0, "expert")
    save_labels(
        store, "101.jpg", [LabelDraft((3.0, 4.0)), LabelDraft((9.0, 9.0), (8.0, 8.0, 10.0, 10.0), "teardrop")], 0, "x"
    )
    dataset = read_dataset(store, classes=list(original.classes), name="chula-store")
    assert (dataset.classes, dataset.name) == (original.classes, "chula-store")
    assert [image.image_id for image in dataset] == ["10.jpg", "100.jpg", "101.jpg"]
    for read, expected in zip(dataset.images[:2], original.images[:2], strict=True):
        assert read.path == images / "Dataset" / f"{expected.image_id}.jpg"
        assert read.size == expected.size
        np.testing.assert_array_equal(read.cells.centres, expected.cells.centres)
        np.testing.assert_array_equal(read.cells.labels, expected.cells.labels)
        assert read.cells.boxes is None and read.cells.scores is None
    mixed = dataset.images[2].cells
    assert mixed.labels.tolist() == [UNCLASSIFIED, original.classes.index("teardrop")]
    np.testing.assert_array_equal(mixed.boxes, [[np.nan] * 4, [8.0, 8.0, 10.0, 10.0]])
    assert read_dataset(store).classes == sorted(
        {original.classes[i] for im in original.images[:2] for i in im.cells.labels} | {"teardrop"}
    )
    with pytest.raises(DataError, match=r"10\.jpg: class '.+' is not in the class map \(normal cell\)"):
        read_dataset(store, classes=["normal cell"])


def test_proposals_rounds_and_queue(store, images):
    model = bundled_models()["rbc-morphology-points"]
    version = add_model_version(store, model)
    assert add_model_version(store, model, "again") == version  # one row per file content
    root = images / "Dataset"
    classes = ["normal cell", "teardrop"]
    cells = Cells(
        centres=[[10.0, 12.0], [40.0, 44.0]],
        boxes=[[np.nan] * 4, [35.0, 39.0, 45.0, 49.0]],
        labels=[0, 1],
        scores=[0.9, 0.4],
        probabilities=[[0.9, 0.1], [0.6, 0.4]],
        extras={"Ud": [1.0, 0.5], "Uc": [0.95, 0.55], "Ur": [0.0, 1.0]},
    )
    predictions = [AnnotatedImage(root / f"{stem}.jpg", 640, 480, cells=cells) for stem in CHULA_IMAGES]
    assert record_round(store, version, classes, predictions, relevance=[1.0, 12.0, 3.0]) == 1
    assert [entry.image for entry in review_queue(store)] == ["100.jpg", "101.jpg", "10.jpg"]
    assert record_round(store, version, classes, predictions[:1], relevance=[20.0]) == 2
    queue = review_queue(store)
    assert [(entry.image, entry.relevance) for entry in queue] == [
        ("10.jpg", 20.0),
        ("100.jpg", 12.0),
        ("101.jpg", 3.0),
    ]
    proposals = read_proposals(store, "100.jpg")
    assert [(p.centre, p.box, p.class_name, p.score) for p in proposals] == [
        ((10.0, 12.0), None, "normal cell", 0.9),
        ((40.0, 44.0), (35.0, 39.0, 45.0, 49.0), "teardrop", 0.4),
    ]
    assert proposals[1].probabilities == [0.6, 0.4]
    assert proposals[1].uncertainties == {"Ud": 0.5, "Uc": 0.55, "Ur": 1.0}
    assert [p.id for p in read_proposals(store, "10.jpg", 1)] != [p.id for p in read_proposals(store, "10.jpg")]
    accepted = proposals[1]
    save_labels(store, "10.jpg", [LabelDraft(accepted.centre, accepted.box, "teardrop", accepted.id)], 0, "ann")
    assert read_labels(store, "10.jpg").labels[0].proposal_id == accepted.id
    assert [(entry.image, entry.labelled) for entry in review_queue(store)] == [
        ("100.jpg", False),
        ("101.jpg", False),
        ("10.jpg", True),
    ]
    with store.transaction() as session:
        card = session.execute(text("SELECT name FROM model_versions")).scalar_one()
    assert card == "rbc-morphology-points"
    with pytest.raises(DataError, match="no model version 99 in the store"):
        record_round(store, 99, classes, predictions)
    with pytest.raises(DataError, match="2 relevance values for 3 images"):
        record_round(store, version, classes, predictions, relevance=[1.0, 2.0])
    outside = AnnotatedImage(images / "Label" / "10.txt", 640, 480, cells=cells)
    with pytest.raises(DataError, match="outside the store's image folder"):
        record_round(store, version, classes, [outside])
    assert max(entry.relevance for entry in review_queue(store)) == 20.0  # refused rounds recorded nothing


def test_paths_never_leave_the_root(store, images, tmp_path):
    root = images / "Dataset"
    assert image_file(store, "sub/../10.jpg") == root / "10.jpg"  # resolved: the file checked is the file served
    for name in ("../Label/10.txt", "/etc/passwd", "sub/../../chula/Label/10.txt"):
        with pytest.raises(DataError, match="store's image folder"):
            image_file(store, name)
    with pytest.raises(DataError, match="outside the store's image folder"):
        add_images(store, images / "Label")
    (tmp_path / "outside.jpg").write_bytes((root / "10.jpg").read_bytes())
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(DataError, match="outside the store's image folder"):
        image_file(store, "escape/outside.jpg")
    (root / "linked.jpg").symlink_to(tmp_path / "outside.jpg")
    with pytest.raises(DataError, match="linked.jpg: outside the store's image folder"):
        add_images(store)


def test_bad_stores_get_one_line(tmp_path, images):
    root = images / "Dataset"
    not_database = tmp_path / "notes.db"
    not_database.write_text("these are notes, not a database\n" * 100)
    with pytest.raises(
        DataError, match=r"notes\.db: cannot be used as an annotation store \(file is not a database\)$"
    ):
        open_store(not_database, root)
    other = tmp_path / "other.db"
    engine = create_engine(f"sqlite:///{other}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE things (id INTEGER)"))
    engine.dispose()
    with pytest.raises(DataError, match="other.db: not an annotation store: it holds tables but no store schema"):
        open_store(other, root)
    with pytest.raises(DataError, match="is a folder"):
        open_store(tmp_path, root)
    with pytest.raises(DataError, match="the images' root folder does not exist"):
        open_store(tmp_path / "s.db", tmp_path / "missing")
    with pytest.raises(DataError, match="no SQLAlchemy driver for 'nosuchdb'"):
        open_store("nosuchdb://user:secret@localhost/x", root)
    with pytest.raises(DataError) as unreachable:  # nothing listens on port 1
        open_store("postgresql+psycopg://user:secret@127.0.0.1:1/x", root)
    message = str(unreachable.value)
    assert message.startswith("postgresql+psycopg://user:***@127.0.0.1:1/x: cannot be used as an annotation store (")
    assert "secret" not in message and "\n" not in message


def test_a_newer_schema_is_refused(location, images):
    root = images / "Dataset"
    open_store(location, root).close()
    engine = create_engine(location if "://" in location else f"sqlite:///{location}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(
        DataError, match=r"its schema \(revision 9999\) is newer than this cytolens knows \(up to 0001\)"
    ):
        open_store(location, root)
