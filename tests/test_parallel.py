"""``inference.parallel.ordered_map``: input order kept, items out bounded, errors as one line, in this process and on a
Dask LocalCluster of 2 workers; ``ModelSpec`` loads once per process.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from cytolens.errors import CytolensError, DataError
from cytolens.inference.parallel import ModelSpec, _Failure, ordered_map

BAD = 4
"""The toy item whose image cannot be read: returned as a DataError, as predicting returns one."""
RAISING = 6
"""The toy item that raises a DataError."""


def toy(item: int) -> tuple[int, int] | DataError:
    """The item squared and the process that computed it; later items take less time, so that they finish first."""
    time.sleep(0.02 * (8 - item % 8))
    if item == BAD:
        logging.getLogger("cytolens.toy").warning("item %d: a warning from the worker", item)
        return DataError(f"image{item}.png", "cannot be read")
    if item == RAISING:
        raise DataError(f"image{item}.png", "raised in the worker")
    return item * item, os.getpid()


class Counted:
    """Items 0..n-1 handed out lazily, counting those taken."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = 0

    def __iter__(self) -> Iterator[int]:
        for item in range(self.n):
            self.taken += 1
            yield item


def consume(results: Iterator, items: Counted, in_flight: int) -> tuple[list, int]:
    """The results up to the first raised error (returned as the last element), and the most items ever taken and
    not yet yielded.
    """
    seen: list = []
    most = 0
    try:
        for result in results:
            most = max(most, items.taken - len(seen))
            seen.append(result)
    except CytolensError as error:
        seen.append(error)
    assert most <= in_flight
    return seen, most


def test_serial_keeps_order_and_takes_one_item_at_a_time() -> None:
    items = Counted(RAISING + 2)
    seen, most = consume(ordered_map(toy, items), items, in_flight=1)
    assert [value[0] for value in seen[:BAD]] == [item * item for item in range(BAD)]
    assert isinstance(seen[BAD], DataError) and seen[BAD].path.name == f"image{BAD}.png"
    assert isinstance(seen[-1], DataError) and str(seen[-1]) == f"image{RAISING}.png: raised in the worker"
    assert len(seen) == RAISING + 1 and most == 1
    assert {value[1] for value in seen if isinstance(value, tuple)} == {os.getpid()}


def test_serial_path_does_not_import_dask() -> None:
    code = (
        "import sys; from cytolens.inference.parallel import ordered_map; "
        "assert list(ordered_map(abs, [-1, 2])) == [1, 2]; print('distributed' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize(("option", "value"), [("workers", 0), ("in_flight", 0), ("workers", 1.5)])
def test_bad_numbers_are_one_line(option: str, value: object) -> None:
    with pytest.raises(CytolensError, match=option):
        ordered_map(abs, [1], **{option: value})


def test_failure_carries_a_data_error_through_pickle() -> None:
    error = DataError("slide.tif", "tile 3 cannot be read")
    again = pickle.loads(pickle.dumps(_Failure.of(error))).error()
    assert type(again) is DataError and str(again) == str(error)
    assert again.path == error.path and again.problem == error.problem


@pytest.mark.timeout(300)
def test_local_cluster_keeps_order_bounds_items_out_and_returns_errors(caplog: pytest.LogCaptureFixture) -> None:
    items = Counted(RAISING + 4)
    with caplog.at_level(logging.WARNING, logger="cytolens"):
        seen, _ = consume(ordered_map(toy, items, workers=2, in_flight=3), items, in_flight=3)
    assert [value[0] for value in seen[:BAD]] == [item * item for item in range(BAD)]
    assert isinstance(seen[BAD], DataError) and str(seen[BAD]) == f"image{BAD}.png: cannot be read"
    raised = seen[-1]
    assert type(raised) is DataError and str(raised) == f"image{RAISING}.png: raised in the worker"
    assert len(seen) == RAISING + 1
    assert os.getpid() not in {value[1] for value in seen if isinstance(value, tuple)}
    assert f"item {BAD}: a warning from the worker" in caplog.text


def listening(_: object = None) -> list[str]:
    """The addresses this process listens on (TCP or UDP)."""
    return [connection.laddr.ip for connection in psutil.Process().net_connections("inet")
            if connection.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)]


@pytest.mark.timeout(300)
def test_a_local_cluster_listens_on_127_0_0_1_only() -> None:
    """The scheduler and nannies (in this process), the workers, and the HTTP servers each of them starts."""
    before = len(listening())
    seen: list[str] = []
    for addresses in ordered_map(listening, range(4), workers=2):
        seen += addresses
        here = listening()
        assert len(here) > before  # the scheduler's and nannies' servers, while the cluster runs
        seen += here
    assert set(seen) == {"127.0.0.1"}


def environment(name: str) -> str | None:
    """The value of an environment variable in the process that runs this."""
    return os.environ.get(name)


@pytest.mark.timeout(300)
def test_local_workers_keep_glibcs_own_malloc_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask's nanny would start its workers with MALLOC_TRIM_THRESHOLD_=65536 (torch then runs at half speed)."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert list(ordered_map(environment, ["MALLOC_TRIM_THRESHOLD_"] * 2, workers=2)) == [None, None]
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # nor set in this process for the processes it starts


@pytest.mark.timeout(120)
def test_a_running_scheduler_gets_the_items() -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        seen = list(ordered_map(toy, range(BAD), scheduler=cluster.scheduler_address))
    assert [value[0] for value in seen] == [item * item for item in range(BAD)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("address", ["tcp://127.0.0.1:9", "no-port"])
def test_unreachable_scheduler_is_one_line_naming_it(address: str) -> None:
    with pytest.raises(CytolensError, match=f"^{address}: no Dask scheduler answers") as raised:
        list(ordered_map(toy, [1], scheduler=address))
    assert "\n" not in str(raised.value)


def test_model_spec_loads_once_per_process_with_its_settings() -> None:
    spec = ModelSpec("blood-cells", backend="torch", settings={"thresholds": {"nms": 0.3}, "tile_size": 800})
    model = spec.load()
    same = ModelSpec("blood-cells", backend="torch", settings={"tile_size": 800, "thresholds": {"nms": 0.3}})
    assert same.load() is model
    assert model.thresholds.nms == pytest.approx(0.3) and model.card.input.tile_size == 800
    assert pickle.loads(pickle.dumps(spec)) == spec
