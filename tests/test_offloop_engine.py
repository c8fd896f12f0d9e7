"""The asyncio engine with large bodies read off the event loop (engines/offloop.py), end to end.

The server trickles each body (``rate``) so that aiohttp cannot have buffered it all
when the engine hands the socket over: each test also checks that the hand-over
happened. OFF_LOOP_MIN is lowered so that bodies of a few hundred KiB take the path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader import Config, Job, Result, Status, download
from downloader.engines import aio, offloop
from downloader.testing import Rule, Server, body, body_sha256

SIZE = 600_000
RATE = 2_000_000.0  # bytes/s: the body takes about 0.3 s


@pytest.fixture
def handed_over(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Bodies of any size go off the loop; the list gets each hand-over's byte count."""
    counts: list[int] = []
    original = offloop.receive_off_loop

    async def counted(*args: object, **kwargs: object) -> int | None:
        written = await original(*args, **kwargs)  # type: ignore[arg-type]
        if written is not None:
            counts.append(written)
        return written

    monkeypatch.setattr(aio, "OFF_LOOP_MIN", 1)
    monkeypatch.setattr(offloop, "receive_off_loop", counted)
    yield counts


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(dest=tmp_path / "out", engine="asyncio", concurrency=4, retries=3, timeout=1.0,
                  backoff_base=0.01, backoff_cap=0.05)


def fetch(server: Server, name: str, rule: Rule, config: Config, **job: object) -> Result:
    path = f"/bytes/{SIZE}/{name}"
    server.set_rule(path, rule)
    (result,) = download([Job(server.url(path), **job)], config=config)  # type: ignore[arg-type]
    return result


def test_a_trickled_body_is_read_off_the_loop_byte_for_byte(server: Server, config: Config,
                                                             handed_over: list[int]) -> None:
    """A body that arrives over time is written by the reading thread, exactly."""
    result = fetch(server, "offloop-plain.bin", Rule(rate=RATE), config)
    assert Status.DOWNLOADED == result.status and result.received == SIZE
    assert body("offloop-plain.bin", SIZE) == (config.dest / "offloop-plain.bin").read_bytes()
    assert handed_over and 0 < handed_over[0] <= SIZE


def test_a_dropped_connection_off_the_loop_is_resumed_from_the_bytes_received(
        server: Server, config: Config, handed_over: list[int]) -> None:
    """The thread's short count is a cut body: the next attempt asks for exactly the rest."""
    name, cut = "offloop-drop.bin", 250_000
    result = fetch(server, name, Rule(rate=RATE, drop_after=cut, times=1), config)
    assert Status.DOWNLOADED == result.status and result.attempts == 2
    assert body(name, SIZE) == (config.dest / name).read_bytes()
    ranges = [e.range for e in server.requests(f"/bytes/{SIZE}/{name}") if e.method == "GET"]
    assert [None, f"bytes={cut}-"] == ranges
    assert handed_over


def test_a_stall_off_the_loop_is_a_stall_timeout_then_resumed(server: Server, config: Config,
                                                             handed_over: list[int]) -> None:
    """No byte for --timeout seconds in the thread: a stall, retried from the part's end."""
    name, stop = "offloop-stall.bin", 200_000
    started = time.monotonic()
    result = fetch(server, name, Rule(rate=RATE, stall_after=stop, times=1), config)
    assert Status.DOWNLOADED == result.status and result.attempts == 2
    assert time.monotonic() - started < 10
    assert body(name, SIZE) == (config.dest / name).read_bytes()
    ranges = [e.range for e in server.requests(f"/bytes/{SIZE}/{name}") if e.method == "GET"]
    assert [None, f"bytes={stop}-"] == ranges
    assert handed_over


@pytest.mark.parametrize("right", [True, False], ids=["right-sha256", "wrong-sha256"])
def test_sha256_is_checked_over_a_body_read_off_the_loop(server: Server, config: Config,
                                                          handed_over: list[int], right: bool) -> None:
    """The thread hashes what it writes: a right digest finishes, a wrong one fails and leaves nothing."""
    name = f"offloop-sha-{right}.bin"
    digest = body_sha256(name, SIZE) if right else "0" * 64
    result = fetch(server, name, Rule(rate=RATE), dataclasses.replace(config, retries=0), checksum="sha256:" + digest)
    assert handed_over
    if right:
        assert (Status.DOWNLOADED, "sha256:" + digest) == (result.status, result.checksum)
    else:
        assert Status.FAILED == result.status and "sha256 mismatch" in (result.error or "")
        assert not any(p.is_file() and p.stat().st_size for p in (config.dest).glob(f"{name}*"))


def test_a_chunked_body_stays_on_the_loop(server: Server, config: Config, handed_over: list[int]) -> None:
    """No Content-Length (chunked): nothing is handed over, the loop reads it as before."""
    name = "offloop-chunked.bin"
    result = fetch(server, name, Rule(rate=RATE, chunked=True), config)
    assert Status.DOWNLOADED == result.status
    assert body(name, SIZE) == (config.dest / name).read_bytes()
    assert [] == handed_over
