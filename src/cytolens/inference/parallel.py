"""Running a function over many images or slide regions, in this process or on Dask workers, results in input order.

:func:`ordered_map` is the one executor: with ``workers=1`` and no scheduler it is a plain loop in this process
(Dask is not imported); with ``workers`` above 1 it starts a Dask ``LocalCluster`` of that many single-threaded
processes for the call; with ``scheduler`` it sends the work to a running Dask scheduler. A worker builds its
model from a :class:`ModelSpec` (what travels is the spec, never a model file's bytes) and loads it once per
process (:meth:`ModelSpec.load`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cytolens.errors import CytolensError
from cytolens.io.images import read_image
from cytolens.io.validation import check_number

if TYPE_CHECKING:
    from pathlib import Path

    from cytolens.data.cells import ScoreThreshold
    from cytolens.errors import DataError
    from cytolens.inference.model import Model
    from cytolens.results.result import Result

T = TypeVar("T")
R = TypeVar("R")

CONNECT_TIMEOUT = "5s"
"""How long a ``--scheduler`` address is tried before it is reported unreachable."""
SCHEDULER_HTTP = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
"""The embedded scheduler's HTTP server (health and metrics routes; no dashboard): on 127.0.0.1, at a free port
(left to Dask, it takes 8787, and warns on stderr when another run holds it)."""
KEEP_MALLOC = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
"""Dask configuration for the local workers: without Dask's ``MALLOC_TRIM_THRESHOLD_`` (65536), which turns off glibc's
adaptive mmap threshold, so that every array above 128 KiB is mapped and unmapped again: PyTorch then took twice as
long on a slide region (measured on 2 cores, one thread, a 1500-pixel smear region: 6.5 s against 3.2 s). A value set
in this process's environment still passes to the workers."""


@dataclass(frozen=True)
class ModelSpec:
    """How to load a model, small and picklable: what a worker process receives instead of the model.

    Attributes:
        source: A bundled model name, checkpoint file or pipeline file (see
            :func:`~cytolens.inference.model.load_model`).
        classifier: A patch classifier classifying every cell ``source`` finds, or ``None``.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.
        backend: ``torch``, ``onnx`` or ``auto`` (see :func:`~cytolens.inference.model.load_model`).
        settings: What is given at run time, JSON-like: ``thresholds`` (a mapping for
            :meth:`~cytolens.inference.model.Model.with_thresholds`), ``tile_size`` and ``overlap`` (for
            :meth:`~cytolens.inference.model.Model.with_tiling`), ``views`` (for
            :meth:`~cytolens.inference.model.Model.with_views`), ``flips`` (true: point models' test-time flips,
            :meth:`~cytolens.inference.model.Model.with_flips`), ``stain`` (``[method, reference image file]``, for
            :meth:`~cytolens.inference.model.Model.with_stain`); keys left out keep the model's own.

    Examples:
        >>> spec = ModelSpec("blood-cells", settings={"thresholds": {"score": 0.5}})
        >>> model = spec.load()  # doctest: +SKIP

    """

    source: str
    classifier: str | None = None
    device: str = "cpu"
    backend: str = "auto"
    settings: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """The spec as one JSON text (keys sorted): equal specs give equal keys."""
        return json.dumps(asdict(self), sort_keys=True)

    def load(self) -> Model:
        """The model, loaded once per process and spec (later calls return the same object).

        Raises:
            ModelError: If the model cannot be found or loaded (see :func:`~cytolens.inference.model.load_model`).
            CytolensError: If the device, backend or a setting is not usable.

        """
        return _load(self.key())


@functools.lru_cache(maxsize=4)
def _load(key: str) -> Model:
    """The model a :meth:`ModelSpec.key` describes, with its run-time settings applied."""
    from cytolens.inference.model import load_model

    spec = json.loads(key)
    settings = spec["settings"]
    model = load_model(spec["source"], spec["device"], spec["backend"], classifier=spec["classifier"])
    if settings.get("thresholds"):
        model = model.with_thresholds(**settings["thresholds"])
    if settings.get("tile_size") is not None or settings.get("overlap") is not None:
        model = model.with_tiling(settings.get("tile_size"), settings.get("overlap"))
    if settings.get("views") is not None:
        model = model.with_views(settings["views"])
    if settings.get("flips"):
        model = model.with_flips()
    if settings.get("stain"):
        method, reference = settings["stain"]
        model = model.with_stain(method, read_image(reference))
    return model


@dataclass(frozen=True)
class ImageJob:
    """One image to predict on a worker: what :func:`predict_image` takes.

    Attributes:
        spec: The model.
        path: The image file.
        score_threshold: Keep cells scoring at least this (``None``: the model's).
        mpp: µm/px of the image (``None``: what the file states).
        batch_size: Tiles per forward pass, for an image larger than one tile.

    """

    spec: ModelSpec
    path: Path
    score_threshold: ScoreThreshold | None = None
    mpp: float | None = None
    batch_size: int = 1


def predict_image(job: ImageJob) -> Result | DataError:
    """The result of one image, as :meth:`~cytolens.inference.model.Model.predict_iter` yields it: a
    :class:`~cytolens.results.result.Result`, or the :class:`~cytolens.errors.DataError` of an image that fails.
    """
    model = job.spec.load()
    return next(model.predict_iter([job.path], job.batch_size, job.score_threshold, job.mpp))


def ordered_map(
    function: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    in_flight: int | None = None,
) -> Iterator[R]:
    """``function(item)`` for every item, yielded in the order of ``items`` as the results arrive.

    Args:
        function: A module-level function (Dask pickles it by name) taking one item.
        items: Picklable items (e.g. dataclasses holding a :class:`ModelSpec`), read lazily.
        workers: Local processes; 1 runs ``function`` in this process, in a plain loop.
        scheduler: Address of a running Dask scheduler (e.g. ``tcp://10.0.0.5:8786``) to send the items to instead
            of local processes.
        in_flight: Items sent out and not yet yielded, at most (default: twice the workers, or twice the
            scheduler's worker threads when they are more): memory stays bounded however many items there are.

    Returns:
        An iterator of the results, in input order.

    Raises:
        CytolensError: If ``workers`` or ``in_flight`` is not a whole number of at least 1, the scheduler
            cannot be reached, or ``function`` raised one (the same error, from a worker too).

    Examples:
        >>> list(ordered_map(abs, [-2, 1, -3]))
        [2, 1, 3]

    """
    check_number(workers, "workers", low=1, integer=True)
    if in_flight is not None:
        check_number(in_flight, "in_flight", low=1, integer=True)
    if workers == 1 and scheduler is None:
        return map(function, items)
    return _dask_map(function, items, workers, scheduler, in_flight)


def _dask_map(
    function: Callable[[T], R], items: Iterable[T], workers: int, scheduler: str | None, in_flight: int | None
) -> Iterator[R]:
    """:func:`ordered_map` on Dask: a ``LocalCluster`` of ``workers`` processes, or the scheduler's workers."""
    from collections import deque

    level = logging.getLogger("cytolens").getEffectiveLevel()
    with _client(workers, scheduler) as client:
        in_flight = in_flight or 2 * max(workers, sum(client.nthreads().values()))
        pending: deque = deque()
        try:
            for item in items:
                pending.append(client.submit(_call, function, item, level, pure=False))
                if len(pending) >= in_flight:
                    yield pending.popleft().result().unpack()
            while pending:
                yield pending.popleft().result().unpack()
        finally:
            client.cancel(list(pending))


@contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client of the scheduler at ``scheduler``, or of a ``LocalCluster`` of ``workers`` single-threaded
    processes (each running torch on its share of this machine's cores, with glibc's own memory settings: see
    :data:`KEEP_MALLOC`) closed on exit.

    Every server of the cluster listens on 127.0.0.1 only, on ports the system picks: the scheduler (see
    :data:`SCHEDULER_HTTP`), the nannies and the workers, and the workers' HTTP servers (no dashboard).
    """
    import dask
    from distributed import Client, LocalCluster

    quiet = not logging.getLogger("cytolens").isEnabledFor(logging.INFO)
    if quiet:
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, ValueError, TypeError) as error:
            raise CytolensError(f"{scheduler}: no Dask scheduler answers at this address ({_reason(error)})") from None
        with client:
            yield client
        return
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    env = dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), str(threads))
    with (
        dask.config.set(KEEP_MALLOC),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs=SCHEDULER_HTTP,
            host="127.0.0.1",
            silence_logs=logging.ERROR if quiet else False,
            env=env,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _reason(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class _Failure:
    """A :class:`~cytolens.errors.CytolensError` as plain picklable fields (an error whose constructor takes other
    arguments than its message, as ``DataError(path, problem)``, does not survive pickling itself).
    """

    kind: type[CytolensError]
    message: str
    state: dict[str, Any]

    @classmethod
    def of(cls, error: CytolensError) -> _Failure:
        """The fields of ``error``."""
        return cls(type(error), str(error), dict(vars(error)))

    def error(self) -> CytolensError:
        """The error again, of its own type, message and attributes."""
        error = self.kind.__new__(self.kind)
        Exception.__init__(error, self.message)
        error.__dict__.update(self.state)
        return error


def _call(function: Callable[[T], R], item: T, level: int) -> _Outcome:
    """``function(item)`` in a worker, with the ``cytolens`` log records it emits at ``level`` (this caller's)
    kept for the caller instead of printed by the worker.
    """
    logger = logging.getLogger("cytolens")
    kept = _Keeper()
    logger.addHandler(kept)
    propagate, logger.propagate = logger.propagate, False
    previous_level = logger.level
    logger.setLevel(level)
    try:
        value = function(item)
    except CytolensError as error:
        return _Outcome(_Failure.of(error), kept.records, raised=True)
    finally:  # a worker thread in the caller's own process (an in-process cluster) leaves its logger as it was
        logger.removeHandler(kept)
        logger.propagate = propagate
        logger.setLevel(previous_level)
    failure = _Failure.of(value) if isinstance(value, CytolensError) else None
    return _Outcome(value if failure is None else failure, kept.records, raised=False)


class _Keeper(logging.Handler):
    """A log handler keeping the records it sees, their messages formatted (so that any arguments pickle)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` with its message formatted and no exception attached."""
        kept = logging.makeLogRecord(vars(record))
        kept.msg, kept.args, kept.exc_info, kept.exc_text = record.getMessage(), None, None, None
        self.records.append(kept)


@dataclass(frozen=True)
class _Outcome:
    """What :func:`_call` sends back: the value (a :class:`_Failure` for an error), whether it was raised, and the
    log records emitted meanwhile.
    """

    value: Any
    records: list[logging.LogRecord]
    raised: bool

    def unpack(self) -> Any:
        """The value in this process, after the worker's log records are handled here: a raised error raised
        again, a returned one returned.
        """
        for record in self.records:
            logging.getLogger(record.name).handle(record)
        value = self.value.error() if isinstance(self.value, _Failure) else self.value
        if self.raised:
            raise value
        return value


__all__ = ["CONNECT_TIMEOUT", "ImageJob", "ModelSpec", "ordered_map", "predict_image"]
