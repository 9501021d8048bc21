"""A network's compiled sessions, one per input size: the least recently used goes first beyond MAX_SHAPES."""

from __future__ import annotations

from cytolens.inference import runtimes


def test_sessions_keep_the_most_recently_used_sizes(monkeypatch):
    built: list[tuple[int, int]] = []

    def fake_session(runtime, path, build, threads):
        built.append(tuple(int(side) for side in path.stem.split("-")[1].split("x")))
        return object()

    monkeypatch.setattr(runtimes, "cached_session", fake_session)
    sessions = runtimes.ShapeSessions("key", "onnx", threads=1)
    first = sessions.get(32, 32, bytes)
    for side in range(64, 64 + 32 * runtimes.MAX_SHAPES, 32):  # MAX_SHAPES more sizes, 32 x 32 used in between
        assert sessions.get(32, 32, bytes) is first
        sessions.get(side, side, bytes)
    assert sessions.get(32, 32, bytes) is first  # kept: used most recently but one
    sessions.get(64, 64, bytes)  # the least recently used was dropped: built again
    assert built.count((64, 64)) == 2 and built.count((32, 32)) == 1
