"""memory: freed chunk memory is handed back to the system every RELEASE_EVERY bytes stored."""

from __future__ import annotations

import pytest

from downloader import memory


def test_release_comes_once_per_release_every_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes stored by any transfer add up; the allocator is asked once each RELEASE_EVERY bytes."""
    calls: list[int] = []
    monkeypatch.setattr(memory, "_looked_up", True)
    monkeypatch.setattr(memory, "_trim", lambda pad: calls.append(pad) or 1)
    monkeypatch.setattr(memory, "_since_release", 0)

    memory.note_written(memory.RELEASE_EVERY - 1)
    before = len(calls)
    memory.note_written(1)
    memory.note_written(memory.RELEASE_EVERY // 2)

    assert (0, [0]) == (before, calls)


def test_without_malloc_trim_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the C library has no malloc_trim (not glibc), release() is a no-op."""
    monkeypatch.setattr(memory, "_looked_up", True)
    monkeypatch.setattr(memory, "_trim", None)

    memory.release()  # does not raise


def test_release_finds_the_c_library_call() -> None:
    """On this machine's C library the call is found and runs."""
    memory.release()
    assert memory._looked_up
