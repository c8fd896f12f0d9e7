"""Long lists decided fast: the manifest asked once per batch, done files settled without a slot,
the usual URL checked by one match; and the same answers as the one-at-a-time paths."""

from __future__ import annotations

import dataclasses
import io
import itertools
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from downloader import Config, Status, download
from downloader.api import Run
from downloader.dispatch import Dispatcher
from downloader.errors import InvalidJob
from downloader.jobs import Job, Result
from downloader.manifest import _SELECT_DONE, LOOKUP_BATCH, Done, Manifest, Record, default_path
from downloader.progress import Progress
from downloader.sources import Entry, _is_plain, _url_problem, read_list
from downloader.testing import Server


def rec(url: str, status: str = "downloaded", path: str = "a.bin", **changes: object) -> Record:
    record = Record(url=url, path=path, status=status, size=16, checksum="sha256:" + "ab" * 32, etag='"e"',
                    last_modified="Tue, 14 Nov 2023 22:13:20 GMT", final_url=None, attempts=1, error=None,
                    first_seen=1.0, updated=2.0)
    return dataclasses.replace(record, **changes) if changes else record  # type: ignore[arg-type]


# --- Manifest.done ---------------------------------------------------------------------------

def test_done_answers_only_complete_files(tmp_path: Path) -> None:
    """downloaded and unchanged rows are done; failed, pending and skipped ones, and unknown URLs, are not."""
    with Manifest(tmp_path / "m.sqlite") as manifest:
        for status in ("downloaded", "unchanged", "failed", "pending", "skipped"):
            manifest.record(rec(f"http://h/{status}", status, f"{status}.bin"))
        manifest.flush()

        done = manifest.done(f"http://h/{s}" for s in ("downloaded", "unchanged", "failed", "pending", "skipped", "x"))

    assert {"http://h/downloaded", "http://h/unchanged"} == set(done)
    assert Done("http://h/downloaded", "downloaded.bin", 16, "sha256:" + "ab" * 32, None, '"e"',
                "Tue, 14 Nov 2023 22:13:20 GMT") == done["http://h/downloaded"]


def test_done_sees_unwritten_records_and_their_newer_status(tmp_path: Path) -> None:
    """A record not yet written counts, and a newer unwritten failure hides a stored success."""
    with Manifest(tmp_path / "m.sqlite", flush_interval=60) as manifest:
        manifest.record(rec("http://h/was-done", path="was-done.bin"))
        manifest.flush()
        manifest.record(rec("http://h/was-done", "failed", "was-done.bin"))
        manifest.record(rec("http://h/new", path="new.bin"))

        done = manifest.done(["http://h/was-done", "http://h/new"])

    assert ["http://h/new"] == list(done)
    assert "new.bin" == done["http://h/new"].path


def test_done_asks_in_batches_and_takes_duplicates(tmp_path: Path) -> None:
    """More URLs than one query takes, each listed twice: every recorded one is found once."""
    count = 2 * LOOKUP_BATCH + 7
    with Manifest(tmp_path / "m.sqlite") as manifest:
        for i in range(0, count, 2):
            manifest.record(rec(f"http://h/{i}", path=f"{i}.bin"))
        manifest.flush()

        done = manifest.done(f"http://h/{i}" for i in [*range(count), *range(count)])

    assert {f"http://h/{i}" for i in range(0, count, 2)} == set(done)


def test_done_query_finds_rows_by_url_not_by_status(tmp_path: Path) -> None:
    """The query uses the URL index: through the status index it scanned every done row (17 us a URL, not 3)."""
    path = tmp_path / "m.sqlite"
    Manifest(path).close()
    with closing(sqlite3.connect(path)) as db:
        plan = " ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + _SELECT_DONE.format("?, ?"), ("a", "b")))

    assert "(url=?)" in plan and "status" not in plan


# --- the URL check ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://example.test/a", "HTTPS://EXAMPLE.test", "http://a:0/", "http://a:65535/x", "http://a:65536/x",
    "http://a:99999/", "http://a:/x", "http://a:8080", "http://./x", "http://-/x", "http://_~/x", "http://a.b?q",
    "http://a#f", "http://a/ b", "http://a/\x7f", "http://a/é", "http://[::1]:80/", "http://u@a/", "http://@/x",
    "http:///x", "https:/a", "ftp://a/b", "http://a%41/", "http://a/%zz", "http://a/[x]", "http://a:8a/",
])
def test_the_quick_url_check_accepts_only_what_the_full_check_accepts(url: str) -> None:
    """Whatever the one-match check lets through, the full check (urlsplit, port, host) accepts too."""
    if _is_plain(url):
        assert _url_problem(url) is None


def test_the_quick_url_check_takes_the_usual_urls() -> None:
    """The usual URLs take the quick check (else a long list pays urlsplit for every line)."""
    for url in ("http://127.0.0.1:8765/bytes/16/f000001.bin", "https://example.org/data/a.csv?x=1&y=2#top",
                "https://files.example-mirror.org:443/pub/~user/a%20b.tar.gz"):
        assert _is_plain(url)


# --- the dispatcher ----------------------------------------------------------------------------

class Results(Progress):
    """A Progress that also keeps the results, for the assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[Result] = []

    def result(self, result: Result) -> None:
        super().result(result)
        self.results.append(result)


@pytest.mark.parametrize("dest", ["out", "."])
@pytest.mark.parametrize("recorded", ["a.bin", "sub/a.bin", "sub/./a.bin", "./a.bin", "sub//a.bin", ".a", "sub/..",
                                      "/elsewhere/a.bin", ""])
def test_a_recorded_file_is_skipped_without_a_slot_at_the_path_path_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dest: str, recorded: str) -> None:
    """screen() settles a done URL: skipped, its path as str(dest / recorded path), without placing it."""
    monkeypatch.chdir(tmp_path)
    config = Config(dest=Path(dest), manifest=tmp_path / "m.sqlite")
    events = Results()
    with Manifest(tmp_path / "m.sqlite") as earlier:  # an earlier run's record
        earlier.record(rec("http://h/a", path=recorded))
    with Manifest(tmp_path / "m.sqlite") as manifest:
        dispatcher = Dispatcher(config, events, manifest)

        ((entry, done),) = dispatcher.with_done([Job("http://h/a", origin="l:1")])
        assert dispatcher.screen(entry, done) is None

    (result,) = events.results
    assert (Status.SKIPPED, str(Path(dest) / recorded), "already downloaded (manifest)", "l:1") == (
        result.status, result.path, result.error, result.origin)


def test_screen_passes_on_what_needs_a_slot_and_fails_invalid_lines(tmp_path: Path) -> None:
    """Unknown and failed URLs come back as jobs to place; an invalid line fails at once; --sync skips nothing."""
    events = Results()
    with Manifest(tmp_path / "m.sqlite") as earlier:
        earlier.record(rec("http://h/done", path="done.bin"))
        earlier.record(rec("http://h/failed", "failed", "failed.bin"))
    with Manifest(tmp_path / "m.sqlite") as manifest:
        entries: list[Entry] = [Job("http://h/done"), Job("http://h/failed"), Job("http://h/new"),
                                InvalidJob("http://h/done", "l:4: bad", "l:4")]
        dispatcher = Dispatcher(Config(dest=tmp_path / "out"), events, manifest)
        screened = [dispatcher.screen(entry, done) for entry, done in dispatcher.with_done(entries)]
        syncing = Dispatcher(Config(dest=tmp_path / "out", sync=True), Results(), manifest)

        assert [None] * 4 == [done for _, done in syncing.with_done(entries)]

    assert [None, entries[1], entries[2], None] == screened
    assert [Status.SKIPPED, Status.FAILED] == [r.status for r in events.results]


def test_a_duplicate_placed_as_its_transfer_ends_is_never_fetched_again(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The transfer of a URL may finish (file renamed, claim gone) while its duplicate is being
    placed: the duplicate is parked on the transfer before the disk is looked at, so it is
    settled with it, never started again (seen once in CI as 301 downloads of 300 URLs)."""
    from downloader.dispatch import Verdict

    events = Results()
    dispatcher = Dispatcher(Config(dest=tmp_path), events)
    first, second = Job("http://h/a.bin", origin="l:1"), Job("http://h/a.bin", origin="l:2")
    started = dispatcher.place(first)
    assert started.verdict is Verdict.START and started.path is not None
    path = started.path

    def finish_meanwhile(job: Job, where: Path) -> Result | None:  # the transfer ends during the look
        path.write_bytes(b"x")
        dispatcher.settle(first, path, Result(first.url, Status.DOWNLOADED, str(path), 1, 1, origin="l:1"))
        return None  # what the look saw just before

    monkeypatch.setattr(dispatcher, "_present", finish_meanwhile)
    verdict = dispatcher.place(second).verdict
    if path in dispatcher._claims:  # parked on the transfer, which ends now
        dispatcher.settle(first, path, Result(first.url, Status.DOWNLOADED, str(path), 1, 1, origin="l:1"))

    assert Verdict.START is not verdict
    assert [Status.DOWNLOADED, Status.SKIPPED] == [r.status for r in events.results]


# --- whole runs --------------------------------------------------------------------------------

def test_a_list_of_repeated_urls_is_fetched_once_then_decided_without_a_request(
        server: Server, config: Config) -> None:
    """300 URLs, each listed three times (over several batches): each is requested once, every line
    gets a result; a re-run asks nothing of the server and skips every line from the manifest."""
    config = dataclasses.replace(config, manifest=default_path(config.dest))
    names = [f"huge-{config.engine}-{i}.bin" for i in range(300)]
    listing = "".join(f"{server.file_url(name, 16)}\n" for name in names * 3).encode()

    first = Run(config)(read_list(io.BytesIO(listing), "list.txt"))
    requests = sum(len(server.requests(f"/bytes/16/{name}")) for name in names)
    again = Results()
    Run(config, on_result=again.result)(read_list(io.BytesIO(listing), "list.txt"))

    assert (300, 600, 0) == (first.downloaded, first.skipped, first.failed)
    assert 300 == requests == sum(len(server.requests(f"/bytes/16/{name}")) for name in names)
    assert 900 == len(again.results)
    assert {"already downloaded (manifest)"} == {r.error for r in again.results}


def test_the_first_transfer_starts_before_the_list_is_read(server: Server, config: Config) -> None:
    """With a list far longer than the window, the first result comes after a few batches were read."""
    consumed = itertools.count()
    read_when_first_done: list[int] = []

    def entries() -> Iterator[Entry]:
        for i in range(100_000):
            next(consumed)
            yield Job(server.file_url(f"lazy-{config.engine}-{i % 50}.bin", 16), origin=f"l:{i}")

    def first(result: Result) -> None:
        if not read_when_first_done:
            read_when_first_done.append(next(consumed))

    run = Run(dataclasses.replace(config, manifest=default_path(config.dest)), on_result=first)
    run(itertools.islice(entries(), 3000))

    assert read_when_first_done and read_when_first_done[0] < 1500
    assert 3000 == sum(dataclasses.astuple(run.summary())[:3])


def test_download_api_still_settles_duplicates_one_way(server: Server, config: Config) -> None:
    """The library's download() (no manifest): a URL listed twice is fetched once, both lines reported."""
    url = server.file_url(f"twice-{config.engine}.bin", 16)

    results = download([url, url], config=config)

    assert [Status.DOWNLOADED, Status.SKIPPED] == sorted((r.status for r in results), key=list(Status).index)
