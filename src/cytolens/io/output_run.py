"""The output-run guard: an output folder (or file) only ever holds one whole, finished run.

``cytolens predict`` and ``cytolens convert`` write through :class:`OutputRun`:

- The run is written into a staging path beside ``OUT``, ``.partial-<name>``, and moved into place
  when it ends, so ``OUT`` never mixes two runs and never holds a half-written one.
- An ``OUT`` that exists and is not an empty folder is refused unless ``exist_ok``; the finished run
  then replaces it whole (the old run is moved aside to ``.previous-<name>``, the new one moved in,
  the old one deleted).
- While it runs, a run holds an exclusive lock on ``.<name>.lock`` beside ``OUT`` (``fcntl.flock``,
  released by the system even if the process is killed): a second run into the same ``OUT`` fails at once.
- ``OUT`` may not be, lie inside or hold a path the run reads, nor hold the current folder.
- The next run into ``OUT`` cleans up after a killed run: its staging is deleted, and an earlier run
  it had moved aside (killed between the two moves) is put back.
- A *resumable* run (``cytolens slide``) keeps its staging when it fails or is interrupted, and a run entered with
  ``resume`` keeps the staging of an earlier, unfinished run instead of deleting it, to go on from what it holds.
- A run that fails with an exception changes nothing in ``OUT``, except that in a new (absent or
  empty) ``OUT`` it leaves what the caller declared consistent with :meth:`OutputRun.keep_partial`.
  A :class:`~cytolens.errors.DataError` naming a file of the staging path is raised again naming it
  under ``OUT``.

Messages name the options of ``cytolens predict`` and ``convert`` (``--out``, ``--exist-ok``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from cytolens.errors import DataError

log = logging.getLogger(__name__)


def _exists(path: Path) -> bool:
    """Whether anything, even a broken symbolic link, is at ``path``."""
    return os.path.lexists(path)


def _remove(path: Path) -> None:
    """Delete the file, link or folder tree at ``path``, if any."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif _exists(path):
        path.unlink()


class OutputRun:
    """Context manager writing one run into a staging path and moving it to ``out`` when the run ends.

    Use :attr:`path` (the staging path, absent at first) wherever the run would write ``out``: a folder,
    or a file for single-file outputs (it keeps the suffix of ``out``). File references written inside
    the run stay valid when it moves, as the staging path lies in the same folder as ``out``.

    Args:
        out: The output folder or file.
        exist_ok: Replace an existing, non-empty ``out`` when the run ends, instead of refusing it.
        reads: Paths the run reads (inputs); ``out`` may not be one of them, lie inside one or hold one.
        resumable: Keep the staging when the run fails (it is not moved into ``out``), for a later run to resume.
        resume: Keep the staging an earlier, unfinished run left (killed, failed or interrupted) and write on in it.

    Raises:
        DataError: On entering, if ``out`` exists and is not empty (without ``exist_ok``), another run is
            writing it, it overlaps an input or holds the current folder, or its folder cannot be written.

    Example:
        >>> with OutputRun("results", exist_ok=True) as run:  # doctest: +SKIP
        ...     write_tables(run.path)

    """

    def __init__(
        self, out: str | Path, *, exist_ok: bool = False, reads: Iterable[str | Path] = (), resumable: bool = False,
        resume: bool = False,
    ) -> None:
        self.out = Path(out)
        self._target = Path(os.path.realpath(self.out))
        self.path = self._target.with_name(f".partial-{self._target.name}")
        self._previous = self._target.with_name(f".previous-{self._target.name}")
        self._lock_path = self._target.with_name(f".{self._target.name}.lock")
        self._exist_ok = exist_ok
        self._reads = [Path(path) for path in reads]
        self._lock: int | None = None
        self._replacing = False
        self._keep_partial = False
        self._resumable = resumable
        self._resume = resume

    def keep_partial(self) -> None:
        """Declare the staging consistent: if the run then fails, a new ``out`` still gets what it holds."""
        self._keep_partial = True

    def __enter__(self) -> OutputRun:
        self._refuse_overlaps()
        try:
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
        except OSError as error:
            raise DataError(self.out, f"cannot write here ({error.strerror or error})") from None
        try:
            self._clean_up_killed_run()
            self._replacing = _exists(self._target) and not (
                self._target.is_dir() and not any(self._target.iterdir())
            )
            if self._replacing and not self._exist_ok:
                problem = "already exists and is not empty; give --exist-ok to replace it, or choose another --out"
                raise DataError(self.out, problem)
        except BaseException:
            self._release_lock()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if exc_type is None or (self._keep_partial and not self._replacing):
                self._publish()
                if exc_type is not None:
                    log.warning("%s: holds the part of the run that was finished before it failed", self.out)
            elif self._resumable:
                log.warning("%s: the unfinished run is kept in %s; once what stopped it is fixed, give --resume to "
                            "go on with it", self.out, self.path.name)  # fmt: skip
            else:
                _remove(self.path)
        finally:
            self._release_lock()
        if isinstance(exc, DataError) and exc.path.is_relative_to(self.path):  # name the file the user asked for
            raise DataError(self.out / exc.path.relative_to(self.path), exc.problem) from None

    def _refuse_overlaps(self) -> None:
        """Refuse an ``out`` that would overwrite or delete an input, or the folder the user works in."""
        if Path.cwd().resolve().is_relative_to(self._target):
            raise DataError(self.out, "is the current folder or holds it; choose another --out")
        for read in self._reads:
            real = Path(os.path.realpath(read))
            if real == self._target:
                problem = "is an input of this run"
            elif self._target.is_relative_to(real):
                problem = f"is inside the input {read}"
            elif real.is_relative_to(self._target):
                problem = f"holds the input {read}"
            else:
                continue
            raise DataError(self.out, f"{problem}; choose another --out")

    def _acquire_lock(self) -> None:
        """Lock ``.<name>.lock`` without waiting; the file is deleted on release, so check it is still the one."""
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.path.samestat(os.fstat(fd), os.stat(self._lock_path)):
                    self._lock = fd
                    return
            except BlockingIOError:
                os.close(fd)
                problem = "another cytolens run is writing it; wait for it to end or choose another --out"
                raise DataError(self.out, problem) from None
            except FileNotFoundError:
                pass  # the run holding the lock deleted the file as it ended: lock a new one
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock_path.unlink(missing_ok=True)  # while still locked, so no other run holds the same file
            os.close(self._lock)
            self._lock = None

    def _clean_up_killed_run(self) -> None:
        """Put back an earlier run that a killed run had moved aside, and delete a killed run's staging."""
        if _exists(self._previous):
            if _exists(self._target):
                _remove(self._previous)
            else:
                self._previous.rename(self._target)
                log.warning("%s: put back the earlier run (the run replacing it was killed)", self.out)
        if _exists(self.path) and self._resume:
            log.info("%s: resuming the unfinished run in %s", self.out, self.path.name)
        elif _exists(self.path):
            _remove(self.path)
            log.warning("%s: deleted the unfinished output of a killed run (%s)", self.out, self.path.name)

    def _publish(self) -> None:
        """Move the staging into place, the earlier content of ``out`` aside and then away."""
        if not _exists(self.path):
            self.path.mkdir()  # the run wrote nothing: its output is an empty folder
        if _exists(self._target):
            self._target.rename(self._previous)
        self.path.rename(self._target)
        _remove(self._previous)
