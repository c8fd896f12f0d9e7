"""--dry-run decides through the run's own admission: what it says of each line is what the run then does."""

from __future__ import annotations

import dataclasses
import gc
import os
import sqlite3
import tracemalloc
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import pytest

from downloader import Config, Job, Result, Status
from downloader.api import Run
from downloader.cli import main
from downloader.core import ResumeState
from downloader.dryrun import Planned, plan
from downloader.manifest import Manifest, ManifestError, ManifestPreview, Record, default_path
from downloader.naming import collision_path
from downloader.sources import read_list, read_urls
from downloader.testing import Server, body

Prepare = Callable[[Path, Server, Manifest], str]
"""Set up one case in the destination (files, parts, manifest rows); its list line(s)."""

LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)  # what the test server sends for version 0


def row(url: str, path: str, status: Status, size: int | None = None) -> Record:
    return Record(url=url, path=path, status=status, size=size, checksum=None, etag=None, last_modified=None,
                  final_url=None, attempts=1, error="boom" if status is Status.FAILED else None,
                  first_seen=1.0, updated=2.0)


def nothing(dest: Path, server: Server, manifest: Manifest) -> str:
    return server.file_url("new.bin", 100)


def final_file_present(dest: Path, server: Server, manifest: Manifest) -> str:
    (dest / "present.bin").write_bytes(body("present.bin", 10))
    return server.file_url("present.bin", 10)


def part_with_valid_state(dest: Path, server: Server, manifest: Manifest) -> str:
    url = server.file_url("resume.bin", 10_000)
    (dest / "resume.bin.part").write_bytes(body("resume.bin", 10_000)[:4000])
    (dest / "resume.bin.part.state").write_text(ResumeState(url, None, LAST_MODIFIED, 10_000).dumps())
    return url


def part_without_state(dest: Path, server: Server, manifest: Manifest) -> str:
    (dest / "nostate.bin.part").write_bytes(b"x" * 300)
    return server.file_url("nostate.bin", 1000)


def manifest_done_row(dest: Path, server: Server, manifest: Manifest) -> str:
    url = server.file_url("done.bin", 50)
    manifest.record(row(url, "done.bin", Status.DOWNLOADED, 50))  # the file is gone: the manifest is trusted
    return url


def failed_row_with_collision_path(dest: Path, server: Server, manifest: Manifest) -> str:
    owner, other = server.url("/bytes/10/a/same.bin"), server.url("/bytes/20/b/same.bin")
    (dest / "same.bin").write_bytes(body("same.bin", 10))
    manifest.record(row(owner, "same.bin", Status.DOWNLOADED, 10))
    manifest.record(row(other, collision_path(dest / "same.bin", other).name, Status.FAILED))
    return other


def name_owned_by_another_url(dest: Path, server: Server, manifest: Manifest) -> str:
    owner, other = server.url("/bytes/10/d/owned.bin"), server.url("/bytes/12/c/owned.bin")
    (dest / "owned.bin").write_bytes(body("owned.bin", 10))
    manifest.record(row(owner, "owned.bin", Status.DOWNLOADED, 10))
    return other


def pending_row_with_part(dest: Path, server: Server, manifest: Manifest) -> str:
    url = server.file_url("pending.bin", 5000)
    (dest / "pending.bin.part").write_bytes(body("pending.bin", 5000)[:1000])
    (dest / "pending.bin.part.state").write_text(ResumeState(url, None, LAST_MODIFIED, 5000).dumps())
    manifest.record(row(url, "pending.bin", Status.PENDING))
    return url


def out_given(dest: Path, server: Server, manifest: Manifest) -> str:
    return server.url("/bytes/10/x/whatever.bin") + " out=sub/given.bin"


def size_mismatch(dest: Path, server: Server, manifest: Manifest) -> str:
    (dest / "sized.bin").write_bytes(b"x" * 10)
    return server.file_url("sized.bin", 20) + " size=20"


def symlink_at_the_path(dest: Path, server: Server, manifest: Manifest) -> str:
    (dest / "link.bin").symlink_to(dest.parent / "elsewhere.bin")
    return server.file_url("link.bin", 10)


def symlink_at_the_part(dest: Path, server: Server, manifest: Manifest) -> str:
    (dest / "linkpart.bin.part").symlink_to(dest.parent / "elsewhere.part")
    return server.file_url("linkpart.bin", 10)


def directory_at_the_path(dest: Path, server: Server, manifest: Manifest) -> str:
    (dest / "dir.bin").mkdir()
    return server.file_url("dir.bin", 10)


def duplicate_url(dest: Path, server: Server, manifest: Manifest) -> str:
    url = server.file_url("dup.bin", 10)
    return f"{url}\n{url}"


def two_urls_one_name(dest: Path, server: Server, manifest: Manifest) -> str:
    return f"{server.url('/bytes/10/p/twin.bin')}\n{server.url('/bytes/30/q/twin.bin')}"


def invalid_line(dest: Path, server: Server, manifest: Manifest) -> str:
    return "ftp://example.org/x"


CASES: list[tuple[Prepare, list[tuple[str, str | None]]]] = [
    # (how to prepare, with a manifest: the (action, path relative to dest) of each of its lines)
    (nothing, [("download", "new.bin")]),
    (final_file_present, [("skip", "present.bin")]),
    (part_with_valid_state, [("resume", "resume.bin")]),
    (part_without_state, [("download", "nostate.bin")]),
    (manifest_done_row, [("skip", "done.bin")]),
    (failed_row_with_collision_path, [("download", "collision:same.bin")]),
    (name_owned_by_another_url, [("download", "collision:owned.bin")]),
    (pending_row_with_part, [("resume", "pending.bin")]),
    (out_given, [("download", "sub/given.bin")]),
    (size_mismatch, [("fail", None)]),
    (symlink_at_the_path, [("fail", None)]),
    (symlink_at_the_part, [("fail", None)]),
    (directory_at_the_path, [("fail", None)]),
    (duplicate_url, [("download", "dup.bin"), ("skip", "dup.bin")]),
    (two_urls_one_name, [("download", "twin.bin"), ("download", "collision:twin.bin")]),
    (invalid_line, [("fail", None)]),
]


def prepared(dest: Path, server: Server, cases: list[Prepare]) -> Path:
    """Each case set up in ``dest`` and its manifest; the list file of all their lines."""
    dest.mkdir(parents=True)
    with Manifest(default_path(dest)) as manifest:
        lines = [prepare(dest, server, manifest) for prepare in cases]
    listing = dest.parent / "urls.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def snapshot(dest: Path) -> dict[str, tuple[object, ...]]:
    """Every name under ``dest`` with its type, size, mtime and link target: what "nothing written" compares."""
    found: dict[str, tuple[object, ...]] = {}
    for directory, names, files in os.walk(dest):
        for name in names + files:
            path = Path(directory, name)
            info = path.lstat()
            target = os.readlink(path) if path.is_symlink() else None
            found[str(path.relative_to(dest))] = (info.st_mode, info.st_size, info.st_mtime_ns, target)
    return found


def planned_lines(listing: Path, config: Config) -> list[Planned]:
    with listing.open("rb") as stream:
        return list(plan(read_list(stream, str(listing)), config))


def run_lines(listing: Path, config: Config) -> dict[str, Result]:
    """The real run over the list: each result by its line's origin."""
    results: list[Result] = []
    with listing.open("rb") as stream:
        Run(config, on_result=results.append)(read_list(stream, str(listing)))
    return {str(result.origin): result for result in results}


def expected_path(dest: Path, relative: str | None, url: str) -> Path | None:
    if relative is None:
        return None
    if relative.startswith("collision:"):
        return collision_path(dest / relative.removeprefix("collision:"), url)
    return dest / relative


def what_the_run_did(result: Result) -> tuple[str, str | None]:
    """The run's result in the dry run's terms: downloaded at a path, skipped or failed."""
    if result.status is Status.DOWNLOADED:
        return "fetched", result.path
    return result.status.value, None


def what_the_plan_said(item: Planned) -> tuple[str, str | None]:
    if item.action in ("download", "resume"):
        return "fetched", str(item.path)
    return {"skip": Status.SKIPPED.value, "fail": Status.FAILED.value}[item.action], None


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "no-manifest"])
def test_dry_run_says_what_the_run_then_does(server: Server, config: Config, with_manifest: bool) -> None:
    """Over a table of prepared destinations, each line's planned action and path are what the run does,
    and the dry run writes nothing.

    Without a manifest, two URLs of one name are left out: the run itself then fails the
    second while the first is in flight and skips it once the first is done (the plan says skip).
    """
    dest = config.dest
    cases = [prepare for prepare, _ in CASES if with_manifest or prepare is not two_urls_one_name]
    listing = prepared(dest, server, cases)
    config = dataclasses.replace(config, manifest=default_path(dest) if with_manifest else None)
    before = snapshot(dest)
    requests = len(server.log)

    planned = planned_lines(listing, config)

    assert (before, requests) == (snapshot(dest), len(server.log))
    results = run_lines(listing, config)
    origins = [f"{listing}:{number}" for number in range(1, len(planned) + 1)]
    assert sorted(origins) == sorted(results)
    assert [what_the_plan_said(item) for item in planned] == [what_the_run_did(results[o]) for o in origins]
    resumed = [results[o] for item, o in zip(planned, origins, strict=True) if item.action == "resume"]
    assert all(0 < result.received < result.size for result in resumed), resumed


def test_dry_run_plan_with_a_manifest(server: Server, tmp_path: Path) -> None:
    """The table's expected plan: collision names for a failed row and for a name another URL owns,
    a resume for a pending row with its part, a skip for a duplicate line."""
    config = Config(dest=tmp_path / "out", manifest=default_path(tmp_path / "out"))
    listing = prepared(config.dest, server, [prepare for prepare, _ in CASES])

    planned = planned_lines(listing, config)

    expected: list[tuple[str, Path | None]] = []
    items = iter(planned)
    for _, lines in CASES:
        for action, relative in lines:
            expected.append((action, expected_path(config.dest, relative, next(items).url)))
    assert expected == [(item.action, None if item.action == "fail" else item.path) for item in planned]


def test_a_duplicate_line_says_so(server: Server, tmp_path: Path) -> None:
    """The second line of a URL is a skip that names it a duplicate, with or without a manifest."""
    url = server.file_url("dup-detail.bin", 10)
    for manifest in (tmp_path / "m.sqlite", None):
        config = Config(dest=tmp_path / "out", manifest=manifest)

        second = list(plan(read_urls([url, url]), config))[1]

        assert ("skip", "a duplicate of an earlier line") == (second.action, second.detail)


def test_cli_dry_run_creates_no_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run into a destination that does not exist plans a download and leaves the disk alone."""
    dest = tmp_path / "new" / "dest"

    status = main(["http://127.0.0.1:9/x.bin", "-d", str(dest), "--dry-run"])

    assert (0, False) == (status, (tmp_path / "new").exists())
    assert capsys.readouterr().out.startswith("download")


def test_cli_dry_run_with_an_unreadable_manifest_is_a_usage_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest that is not one stops the dry run as it stops a run: exit 2, the file named."""
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 500)

    status = main(["http://127.0.0.1:9/x.bin", "-d", str(tmp_path), "--manifest", str(tmp_path / "junk.sqlite"),
                   "--dry-run"])

    assert 2 == status
    assert "junk.sqlite" in capsys.readouterr().err


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "no-manifest"])
def test_memory_does_not_grow_with_the_list(tmp_path: Path, with_manifest: bool) -> None:
    """Python memory held while planning ten times more lines (every path new, with duplicates and
    collisions) stays within a small bound: what the plan remembers lives in SQLite's temporary store."""
    config = Config(dest=tmp_path / "out", manifest=tmp_path / "m.sqlite" if with_manifest else None)

    def peak(count: int) -> int:
        entries = (Job(f"http://h/{i // 3}/f{i // 2}.bin", origin=f"l:{i}") for i in range(count))
        gc.collect()  # nothing left of the other measure
        tracemalloc.start()
        try:
            for _ in plan(entries, config):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # tracemalloc counts every thread: a server thread of an earlier test cleaning up can
    # allocate during one measure, so the least of three tries is the plan's own growth.
    growths = []
    for _ in range(3):
        small, large = peak(500), peak(5000)
        growths.append(large - small)
        if growths[-1] < 64 * 1024:
            break

    assert min(growths) < 64 * 1024, growths  # 50 bytes kept per line would be 225 KiB


# --- the manifest as the dry run reads it --------------------------------------------------


def test_preview_creates_no_manifest(tmp_path: Path) -> None:
    """No manifest file: an empty one in memory; nothing is created, not even the directory."""
    path = tmp_path / ".downloader" / "manifest.sqlite"

    with ManifestPreview(path) as preview:
        assert (True, None) == (preview.empty_at_open, preview.lookup("http://h/x"))

    assert [] == list(tmp_path.iterdir())


def test_preview_of_a_closed_manifest_creates_nothing_beside_it(tmp_path: Path) -> None:
    """A closed manifest is read without -wal and -shm files appearing; a record stays in the preview."""
    path = tmp_path / "m.sqlite"
    with Manifest(path) as manifest:
        manifest.record(row("http://h/a", "a.bin", Status.DOWNLOADED, 3))
    before = snapshot(tmp_path)

    with ManifestPreview(path) as preview:
        preview.record(row("http://h/b", "a.bin", Status.FAILED))
        seen = (preview.empty_at_open, preview.owner("a.bin"), sorted(preview.done(["http://h/a", "http://h/b"])))

    assert (False, "http://h/b", ["http://h/a"]) == seen
    assert before == snapshot(tmp_path)
    with sqlite3.connect(path) as db:
        assert [("http://h/a",)] == db.execute("SELECT url FROM files").fetchall()


def test_preview_reads_the_rows_of_a_manifest_in_use(tmp_path: Path) -> None:
    """While a run holds the manifest (its rows still in the -wal file), the preview reads them, read-only."""
    path = tmp_path / "m.sqlite"
    with Manifest(path) as manifest:
        manifest.record(row("http://h/a", "a.bin", Status.DOWNLOADED, 3))
        manifest.flush()
        names = sorted(p.name for p in tmp_path.iterdir())

        with ManifestPreview(path) as preview:
            found = preview.lookup("http://h/a")

        assert names == sorted(p.name for p in tmp_path.iterdir())
    assert found is not None and ("a.bin", Status.DOWNLOADED) == (found.path, found.status)


def test_preview_refuses_what_is_not_a_manifest(tmp_path: Path) -> None:
    """A file that is not a manifest is a ManifestError naming it, as for a run."""
    path = tmp_path / "m.sqlite"
    path.write_bytes(b"not a database at all" * 100)

    with pytest.raises(ManifestError, match="m.sqlite"):
        ManifestPreview(path)
