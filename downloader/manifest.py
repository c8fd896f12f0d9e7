"""The manifest: a SQLite table of what happened to each URL, kept on disk so re-runs need not look again.

One row per URL in ``DEST/.downloader/manifest.sqlite`` lets a nightly re-run of a
mirror skip finished files without a ``stat`` each, send ``If-None-Match`` /
``If-Modified-Since`` from what was recorded, and lets ``downloader status DEST``
print counts and failures.

How it stays off the transfers' path:

* :meth:`Manifest.record` only puts the record in a bounded in-memory batch
  (``4 * batch_size`` records) and returns; it blocks only when that is full,
  which is the backpressure that keeps memory bounded whatever the list length.
* One writer thread owns the only write connection and commits up to
  ``batch_size`` rows per transaction, or whatever has waited ``flush_interval``
  seconds, so there is never a transaction per result, let alone per chunk.
* Reads use a small pool of read connections (one per concurrent reader) in WAL
  mode, so readers never wait for the writer, and see the unwritten batch too.

Two processes may open one manifest at once: WAL lets readers run beside a
writer, and writers wait up to :data:`BUSY_TIMEOUT` seconds for each other's
(short) transactions. A killed process loses at most its unwritten batch; SQLite's
journal keeps the file itself consistent.
"""

from __future__ import annotations

import itertools
import logging
import operator
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # imported where a connection is opened: a run without a manifest never loads SQLite
    import sqlite3

from downloader.errors import ManifestError  # defined with the package's other errors; imported from here too
from downloader.jobs import DONE_STATUSES, Status

__all__ = [
    "BUSY_TIMEOUT",
    "LOOKUP_BATCH",
    "PREVIEW_CACHE_KIB",
    "READ_MAP_BYTES",
    "SCHEMA_VERSION",
    "Done",
    "Manifest",
    "ManifestError",
    "ManifestPreview",
    "Record",
    "default_path",
    "read_records",
    "status_report",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""The layout this module writes; a file with a higher number is refused, never downgraded.
Version 1 named the digest column ``sha256`` (hex alone); opening one to write upgrades it."""

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another process's transaction before giving up."""

_REPORT_ORDER = (Status.DOWNLOADED, Status.SKIPPED, Status.FAILED, Status.UNCHANGED, Status.PENDING)
"""The order ``downloader status`` prints the counts in."""

READ_MAP_BYTES = 16 * 1024 * 1024
"""How much of the file each read connection maps into memory (SQLite's mmap_size).

A re-run of a list in random order looks up rows all over the file: read through
SQLite's 2 MiB page cache, every lookup of a 100,000-URL manifest (30 MB) was two
system calls (3 of its 9 us). Mapped, the rows are read in place. The mapped pages are
the kernel's file cache, which it may drop at will, but they count in the RSS: up to
this bound, whatever the size of the manifest. 64 MiB took a re-run of ten million
lines to 69 MB of RSS, past the 64 MB every process must stay under; 16 MiB keeps the
first 16 MiB of the file mapped and reads the rest through the page cache.
"""

LOOKUP_BATCH = 500
"""Most URLs :meth:`Manifest.done` asks for in one query: SQLite before 3.32 allowed
999 parameters per statement."""

PREVIEW_CACHE_KIB = 2048
"""Most KiB of planned rows a :class:`ManifestPreview` keeps in memory; the rest spill to a temporary file."""


@dataclass(frozen=True, slots=True)
class Record:
    """What is known about one URL, as one row of the manifest.

    Args:
        url: the URL as listed; the row's key.
        path: the output path as given (relative to the destination, or absolute).
        status: a :class:`~downloader.jobs.Status` (its value is accepted too).
        size: bytes of the file, when known.
        checksum: digest of the file as ``ALG:HEX``, when one was computed.
        etag: the ETag the server sent with the body, for ``If-None-Match``.
        last_modified: the Last-Modified it sent, for ``If-Modified-Since``.
        final_url: where redirects ended, when that differs from ``url``.
        attempts: how many attempts the last run made (stored as given, not added up).
        error: why the URL failed, in words.
        first_seen: unix time the URL was first recorded; an update keeps the stored one.
        updated: unix time of this record.
    """

    url: str
    path: str
    status: Status
    size: int | None
    checksum: str | None
    etag: str | None
    last_modified: str | None
    final_url: str | None
    attempts: int
    error: str | None
    first_seen: float
    updated: float

    def __post_init__(self) -> None:
        if type(self.status) is not Status:  # a row read back holds the value
            try:
                object.__setattr__(self, "status", Status(self.status))
            except ValueError:
                raise ValueError(f"Record status must be one of {', '.join(Status)}, not {self.status!r}") from None


class Done(NamedTuple):
    """What the manifest holds of a complete file: what a skipped result reports."""

    url: str
    path: str
    size: int | None
    checksum: str | None
    final_url: str | None
    etag: str | None
    last_modified: str | None


_COLUMNS = tuple(field.name for field in fields(Record))
_row_of = operator.attrgetter(*_COLUMNS)  # Record -> tuple in column order, without astuple's deep copy

_FILES_COLUMNS = """
        url TEXT PRIMARY KEY, path TEXT NOT NULL, status TEXT NOT NULL,
        size INTEGER, checksum TEXT, etag TEXT, last_modified TEXT, final_url TEXT,
        attempts INTEGER NOT NULL, error TEXT, first_seen REAL NOT NULL, updated REAL NOT NULL"""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS files ({_FILES_COLUMNS})",
    "CREATE INDEX IF NOT EXISTS files_path ON files (path)",
    # Serves counts() from a small index and failures() in order without sorting the table.
    "CREATE INDEX IF NOT EXISTS files_status_updated ON files (status, updated)",
    f"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')",
)
_UPSERT = (
    f"INSERT INTO files ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (url) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS if name not in ("url", "first_seen"))
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM files"
_DONE_VALUES = ", ".join(f"'{status}'" for status in sorted(DONE_STATUSES))
# "+status": the condition is checked on each row found by URL, never by the status index,
# which SQLite would otherwise pick and scan every done row (17 us per URL, not 3).
_SELECT_DONE = (f"SELECT {', '.join(Done._fields)} FROM files "
                f"WHERE url IN ({{}}) AND +status IN ({_DONE_VALUES})")
# What a ManifestPreview asks of the rows it keeps aside, and of the file's.
_PLAN_UPSERT = f"INSERT OR REPLACE INTO temp.planned ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_PLANNED_RECORD = f"SELECT {', '.join(_COLUMNS)} FROM temp.planned WHERE url = ?"
_PLANNED_OWNER = "SELECT url FROM temp.planned WHERE path = ? ORDER BY updated DESC LIMIT 1"
# A stored row whose URL the run would have recorded again no longer says where that URL is.
_STORED_OWNER = ("SELECT url FROM main.files AS stored WHERE path = ? AND NOT EXISTS "
                 "(SELECT 1 FROM temp.planned AS planned WHERE planned.url = stored.url) ORDER BY updated DESC LIMIT 1")


def default_path(dest: Path) -> Path:
    """Where the manifest of destination ``dest`` lives: ``dest/.downloader/manifest.sqlite``."""
    return Path(dest) / ".downloader" / "manifest.sqlite"


class Manifest:
    """The manifest at ``path``: thread-safe reads, batched writes by one background thread.

    Args:
        path: the SQLite file; it and its parent directories are created if missing.
        batch_size: most rows per write transaction; the in-memory queue holds four times this.
        flush_interval: most seconds a record waits in memory before it is written.

    Raises:
        ManifestError: the file is not a manifest, has a newer schema, or cannot be created.
    """

    def __init__(self, path: Path, *, batch_size: int = 500, flush_interval: float = 0.5) -> None:
        if batch_size < 1 or flush_interval <= 0:
            raise ValueError(f"batch_size must be >= 1 and flush_interval > 0, not {batch_size}, {flush_interval}")
        self.path = Path(path)
        self._batch_size = batch_size
        self._bound = 4 * batch_size
        self._interval = flush_interval
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits here for records
        self._space = threading.Condition(self._lock)  # record() waits here while the queue is full
        self._done = threading.Condition(self._lock)  # flush() waits here for its records to be written
        self._queued: dict[str, Record] = {}  # recorded, not yet taken by the writer; newest per URL
        self._writing: dict[str, Record] = {}  # taken by the writer, not yet committed
        self._paths: dict[str, str] = {}  # path -> URL for both dicts above, so owner() needs no scan
        self._oldest: float | None = None  # monotonic time the oldest queued record arrived
        self._flush_wanted = self._flushed = 0  # flush() generations requested / completed
        self._closing = self._closed = False
        self._error: ManifestError | None = None
        self._error_reported = False
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []  # read connections not lent to any thread
        self._writer_db = _open_for_writing(self.path)
        self.empty_at_open = self._writer_db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None
        """No row when this process opened it: what it holds later, this process wrote
        (unless another run shares the file), so a caller can keep track and skip lookups."""
        self._writer = threading.Thread(target=self._write_loop, name="manifest-writer", daemon=True)
        self._writer.start()

    # -- recording -------------------------------------------------------------

    def record(self, record: Record) -> None:
        """Queue an upsert of ``record``; it blocks only while ``4 * batch_size`` records wait to be written.

        Raises:
            ManifestError: the manifest is closed, or its writer has failed.
        """
        with self._lock:
            while len(self._queued) >= self._bound and not self._stopped():
                self._space.wait()
            self._raise_if_stopped()
            earlier = self._queued.get(record.url)
            if earlier is not None:
                record = self._merge(earlier, record)
            self._queued[record.url] = record
            self._paths[record.path] = record.url
            if len(self._queued) == 1:
                self._oldest = time.monotonic()
                self._work.notify()  # start the flush_interval clock
            elif len(self._queued) == self._batch_size:
                self._work.notify()

    def _merge(self, earlier: Record, record: Record) -> Record:
        """The newer of two unwritten records of one URL, keeping the first one's first_seen (under the lock)."""
        if earlier.path != record.path and self._paths.get(earlier.path) == record.url:
            writing = self._writing.get(record.url)
            if writing is None or writing.path != earlier.path:
                del self._paths[earlier.path]  # nothing unwritten claims that path for this URL any more
        if earlier.first_seen != record.first_seen:
            record = replace(record, first_seen=earlier.first_seen)
        return record

    def flush(self) -> None:
        """Write every record queued before this call, and return when it is committed.

        Raises:
            ManifestError: the writer has failed (the unwritten records are lost).
        """
        with self._lock:
            self._raise_if_stopped()
            self._flush_wanted += 1
            wanted = self._flush_wanted
            self._work.notify()
            while self._flushed < wanted and self._error is None:
                self._done.wait()
            self._raise_if_stopped()

    def close(self) -> None:
        """Write what is queued, stop the writer and close every connection; calling it again does nothing.

        Raises:
            ManifestError: the writer failed and no earlier call has reported it yet.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._work.notify()
            self._space.notify_all()
        self._writer.join()
        with self._pool_lock:
            self._closed = True  # under the pool lock: no reader is lent after this
            idle, self._idle = self._idle, []
        for db in idle:  # a reader still lent out (an unfinished failures()) is closed when it comes back
            db.close()
        with self._lock:
            if self._error is not None and not self._error_reported:
                self._error_reported = True
                raise self._error

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _stopped(self) -> bool:
        return self._closing or self._error is not None

    def _raise_if_stopped(self) -> None:
        """Raise the writer's error, or a closed error (under the lock)."""
        if self._error is not None:
            self._error_reported = True
            raise self._error
        if self._closing:
            raise ManifestError(self.path, "already closed")

    # -- the writer thread -----------------------------------------------------

    def _write_loop(self) -> None:
        """Take batches and commit them until close() and an empty queue; runs in the writer thread."""
        try:
            while True:
                batch, generation, last = self._take()
                if batch:
                    self._commit(batch)
                self._written(batch, generation)
                if last:
                    return
        except Exception as error:  # noqa: BLE001 - whatever stops the writer must reach the callers, not vanish
            self._fail(error)
        finally:
            self._writer_db.close()

    def _take(self) -> tuple[list[Record], int, bool]:
        """Wait for work; return the records to write, the flush generation they satisfy, and whether to stop."""
        with self._lock:
            while True:
                everything = self._closing or self._flush_wanted > self._flushed
                full = len(self._queued) >= self._batch_size
                late = self._oldest is not None and time.monotonic() - self._oldest >= self._interval
                if everything or full or late:
                    break
                self._work.wait(None if self._oldest is None else self._oldest + self._interval - time.monotonic())
            if everything or not full:
                self._writing, self._queued = self._queued, {}
            else:  # the oldest full batch; dicts keep insertion order, so this is first come, first written
                keys = list(itertools.islice(self._queued, self._batch_size))
                self._writing = {key: self._queued.pop(key) for key in keys}
            self._oldest = time.monotonic() if self._queued else None
            self._space.notify_all()
            return list(self._writing.values()), (self._flush_wanted if everything else self._flushed), self._closing

    def _commit(self, batch: list[Record]) -> None:
        """Upsert ``batch`` in transactions of at most batch_size rows (more only after flush or close)."""
        db = self._writer_db
        for start in range(0, len(batch), self._batch_size):
            # IMMEDIATE takes the write lock up front, where busy_timeout applies: another
            # process's writer makes us wait, instead of failing the upgrade from a read.
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, map(_row_of, batch[start:start + self._batch_size]))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may already have rolled back
                    db.execute("ROLLBACK")
                raise

    def _written(self, batch: list[Record], generation: int) -> None:
        """Forget the committed batch and wake whoever waits for it; runs in the writer thread."""
        with self._lock:
            for record in batch:
                queued = self._queued.get(record.url)
                if self._paths.get(record.path) == record.url and (queued is None or queued.path != record.path):
                    del self._paths[record.path]
            self._writing = {}
            self._flushed = max(self._flushed, generation)
            self._done.notify_all()

    def _fail(self, error: Exception) -> None:
        """Stop accepting records and make every waiting and later call raise; runs in the writer thread."""
        with self._lock:
            lost = len(self._queued) + len(self._writing)
            log.error("manifest %s: writer failed, %d records not written: %s", self.path, lost, error)
            self._error = ManifestError(self.path, f"writing failed ({error}); {lost} records were not written")
            self._error.__cause__ = error
            self._done.notify_all()
            self._space.notify_all()

    # -- reading ---------------------------------------------------------------

    def lookup(self, url: str) -> Record | None:
        """The record of ``url``, including one recorded by this process but not yet written, or None."""
        with self._lock:
            unwritten = self._queued.get(url) or self._writing.get(url)
        if unwritten is None:
            row = self._query_one(f"{_SELECT} WHERE url = ?", (url,))
            return None if row is None else Record(*row)
        # An update keeps the stored first_seen; show what the row will hold once written.
        stored = self._query_one("SELECT first_seen FROM files WHERE url = ?", (url,))
        return unwritten if stored is None or stored[0] == unwritten.first_seen else replace(unwritten, first_seen=stored[0])

    def done(self, urls: Iterable[str]) -> dict[str, Done]:
        """Those of ``urls`` recorded as downloaded or unchanged, unwritten records included.

        One query per :data:`LOOKUP_BATCH` distinct URLs, of the few columns a skipped
        result reports, into tuples: a re-run of a long list asks this for every line,
        and per URL the query costs a third of :meth:`lookup` and a Record as much again.
        """
        wanted = list(dict.fromkeys(urls))
        found: dict[str, Done] = {}
        for start in range(0, len(wanted), LOOKUP_BATCH):
            chunk = wanted[start:start + LOOKUP_BATCH]
            rows = self._query_all(_SELECT_DONE.format(", ".join("?" * len(chunk))), chunk)
            found.update((done.url, done) for done in map(Done._make, rows))
        with self._lock:
            if self._queued or self._writing:  # recorded by this process: newer than the file's rows
                self._overlay_unwritten(wanted, found)
        return found

    def _overlay_unwritten(self, urls: list[str], found: dict[str, Done]) -> None:
        """Put in ``found`` what the unwritten records of ``urls`` say (under the lock)."""
        for url in urls:
            record = self._queued.get(url) or self._writing.get(url)
            if record is None:
                continue
            if record.status in DONE_STATUSES:
                found[url] = _done_of(record)
            else:
                found.pop(url, None)

    def owner(self, path: str) -> str | None:
        """The URL recorded for output ``path`` (the latest one, if several), including unwritten records."""
        with self._lock:
            url = self._paths.get(path)
            unwritten = None if url is None else self._queued.get(url) or self._writing.get(url)
            if unwritten is not None and unwritten.path == path:
                return unwritten.url
        row = self._query_one("SELECT url FROM files WHERE path = ? ORDER BY updated DESC LIMIT 1", (path,))
        return None if row is None else str(row[0])

    def counts(self) -> dict[str, int]:
        """Rows per status, after writing what is queued; statuses without rows are left out."""
        self.flush()
        with self._reading() as db:
            return {str(status): int(count) for status, count in db.execute(
                "SELECT status, COUNT(*) FROM files GROUP BY status")}

    def failures(self, limit: int | None = None) -> Iterator[Record]:
        """Failed records, the oldest update first, at most ``limit``; read from disk one row at a time.

        What is queued is written first. Exhaust or close the iterator promptly: while it
        is open it holds a read snapshot, which keeps SQLite from trimming its WAL file.
        """
        self.flush()
        return self._stream(f"{_SELECT} WHERE status = '{Status.FAILED}' ORDER BY updated LIMIT ?",
                            (-1 if limit is None else limit,))  # LIMIT -1: no limit

    def __len__(self) -> int:
        """The number of URLs recorded, after writing what is queued."""
        self.flush()
        row = self._query_one("SELECT COUNT(*) FROM files", ())
        return 0 if row is None else int(row[0])

    def _query_one(self, sql: str, parameters: Sequence[object]) -> tuple[Any, ...] | None:
        """The first row of a query (its values typed by the schema, so Any here), or None."""
        with self._reading() as db:
            row: tuple[Any, ...] | None = db.execute(sql, parameters).fetchone()
            return row

    def _query_all(self, sql: str, parameters: Sequence[object]) -> list[tuple[Any, ...]]:
        with self._reading() as db:
            rows: list[tuple[Any, ...]] = db.execute(sql, parameters).fetchall()
            return rows

    def _stream(self, sql: str, parameters: Sequence[object]) -> Iterator[Record]:
        with self._reading() as db:
            cursor = db.execute(sql, parameters)
            try:
                for row in cursor:
                    yield Record(*row)
            finally:
                cursor.close()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """Lend a read connection to the calling thread, opening one when all are in use.

        A pool rather than one connection per thread: no connection is left behind by a
        thread that ends, and a streaming failures() has its own read snapshot, so lookups
        in the same thread still see the latest commits.
        """
        with self._pool_lock:
            if self._closed:
                raise ManifestError(self.path, "already closed")
            db = self._idle.pop() if self._idle else None
        if db is None:  # only when every reader is lent out: the pool grows to the number of concurrent readers
            db = _open_for_reading(self.path)
        try:
            yield db
        finally:
            with self._pool_lock:
                keep = not self._closed
                if keep:
                    self._idle.append(db)
            if not keep:
                db.close()


def _connect(path: Path) -> sqlite3.Connection:
    import sqlite3

    # isolation_level=None: we say BEGIN and COMMIT ourselves, and reads see the latest commit.
    # check_same_thread=False: the writer's connection is opened here and used by its thread,
    # and pooled readers move between threads, but never two threads at a time.
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)


def _open_for_writing(path: Path) -> sqlite3.Connection:
    """The write connection, in WAL mode, with the schema created and checked."""
    import sqlite3

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = _connect(path)
    except (OSError, sqlite3.Error) as error:
        raise ManifestError(path, f"cannot be created ({error})") from error
    try:
        mode = _switch_to_wal(db)  # the first read: fails on a non-database
        if str(mode).lower() != "wal":
            log.warning("manifest %s: journal mode %s, not WAL; other processes may wait for it", path, mode)
        db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable at checkpoints, never corrupt
        _create_schema(path, db)
    except ManifestError:
        db.close()
        raise
    except sqlite3.Error as error:
        db.close()
        raise ManifestError(path, f"not a usable database ({error})") from error
    return db


def _switch_to_wal(db: sqlite3.Connection) -> str:
    """Put the database in WAL mode; the journal mode it is in afterwards.

    Switching needs the database to itself, and SQLite answers "database is locked"
    at once, without waiting for the busy timeout, when another process is switching
    or creating it at the same moment (two runs started together on one destination:
    1 start in 40 failed with three processes). So ask again for up to BUSY_TIMEOUT.
    """
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.005
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.1)


def _create_schema(path: Path, db: sqlite3.Connection) -> None:
    """Create the tables, or check that the file's are ours and not newer, in one transaction."""
    db.execute("BEGIN IMMEDIATE")  # two processes creating one manifest take turns
    try:
        _check_tables(path, db, upgrade=True)
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _check_tables(path: Path, db: sqlite3.Connection, *, upgrade: bool = False) -> bool:
    """Whether the database holds a manifest (False: no table at all); with ``upgrade``
    (in a write transaction) an older layout is brought up to this one.

    Raises:
        ManifestError: it holds other tables, or a manifest of another schema version.
    """
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" in tables:
        _check_version(path, db, upgrade)
        return True
    if tables:
        raise ManifestError(path, f"a SQLite database, but not a manifest (tables: {', '.join(sorted(tables))})")
    return False


def _check_version(path: Path, db: sqlite3.Connection, upgrade: bool) -> None:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        raise ManifestError(path, f"unreadable schema version {row and row[0]!r}") from None
    if version > SCHEMA_VERSION:
        raise ManifestError(path, f"schema version {version} is newer than this downloader's "
                                  f"{SCHEMA_VERSION}; upgrade downloader to use it")
    if version == 1 and upgrade:
        for statement in _UPGRADE_FROM_1:
            db.execute(statement)
    elif version == 1:
        raise ManifestError(path, "schema version 1: a run (not --dry-run) upgrades it to version "
                                  f"{SCHEMA_VERSION}, keeping every row")
    elif version < SCHEMA_VERSION:
        raise ManifestError(path, f"schema version {version} is unknown")


_UPGRADE_FROM_1 = (
    "ALTER TABLE files RENAME COLUMN sha256 TO checksum",
    "UPDATE files SET checksum = 'sha256:' || checksum WHERE checksum IS NOT NULL",
    f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'",
)
"""Version 1 to 2: the digest column holds ``ALG:HEX`` (version 1's were all sha256)."""


def _open_for_reading(path: Path) -> sqlite3.Connection:
    """A read connection on the same file; query_only guards against a write slipping in."""
    import sqlite3

    try:
        db = _connect(path)
        db.execute("PRAGMA query_only = ON")
        db.execute(f"PRAGMA mmap_size = {READ_MAP_BYTES}")
    except sqlite3.Error as error:
        raise ManifestError(path, f"cannot be read ({error})") from error
    return db


def _done_of(record: Record) -> Done:
    return Done(record.url, record.path, record.size, record.checksum, record.final_url, record.etag,
                record.last_modified)


class ManifestPreview:
    """A manifest as ``--dry-run`` sees it: the file read, never written, and the rows the run
    would write kept aside, so that later lines are decided as the run would decide them.

    Nothing is created at ``path`` or beside it. Without ``-wal`` and ``-shm`` files there
    (the manifest was closed), the file is opened in SQLite's ``immutable`` mode: a read-only
    connection would create them. With them (a run is going on, or was killed), it is read
    through them, read-only. No file at ``path``, or None, is an empty manifest.

    What :meth:`record` is given goes to a TEMP table in SQLite's temporary store: a couple
    of MiB of cache in memory, the rest in an unlinked temporary file, so that memory stays
    bounded however long the list. It answers a :class:`~downloader.dispatch.Dispatcher`
    what a :class:`Manifest` would (``empty_at_open``, :meth:`done`, :meth:`lookup`,
    :meth:`owner`, :meth:`record`), from one thread.

    Raises:
        ManifestError: the file is not a manifest, has a newer schema, or cannot be read.
    """

    def __init__(self, path: Path | None) -> None:
        import sqlite3

        self.path = path
        self._db = _open_preview(path)
        try:
            self.empty_at_open = self._db.execute("SELECT 1 FROM main.files LIMIT 1").fetchone() is None
            self._db.execute("PRAGMA temp_store = FILE")
            self._db.execute(f"PRAGMA temp.cache_size = -{PREVIEW_CACHE_KIB}")
            self._db.execute(f"CREATE TEMP TABLE planned ({_FILES_COLUMNS})")
            self._db.execute("CREATE INDEX temp.planned_path ON planned (path, updated)")
        except sqlite3.Error as error:
            self._db.close()
            raise ManifestError(path or ":memory:", f"cannot be read ({error})") from error

    def record(self, record: Record) -> None:
        """Keep ``record`` as the row the run would write; nothing reaches the file."""
        self._rows(_PLAN_UPSERT, _row_of(record))

    def lookup(self, url: str) -> Record | None:
        """The record of ``url``: the one the run would have written, else the file's."""
        rows = self._rows(_PLANNED_RECORD, (url,)) or self._rows(f"{_SELECT} WHERE url = ?", (url,))
        return Record(*rows[0]) if rows else None

    def done(self, urls: Iterable[str]) -> dict[str, Done]:
        """Those of ``urls`` whose :meth:`lookup` is downloaded or unchanged."""
        records = (self.lookup(url) for url in dict.fromkeys(urls))
        return {record.url: _done_of(record) for record in records
                if record is not None and record.status in DONE_STATUSES}

    def owner(self, path: str) -> str | None:
        """The URL the run would have recorded last for ``path``, else the file's (of a URL not recorded since)."""
        rows = self._rows(_PLANNED_OWNER, (path,)) or self._rows(_STORED_OWNER, (path,))
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        """Close the connection; the temporary rows go with it."""
        self._db.close()

    def __enter__(self) -> ManifestPreview:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _rows(self, sql: str, parameters: Sequence[object]) -> list[tuple[Any, ...]]:
        import sqlite3

        try:
            rows: list[tuple[Any, ...]] = self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise ManifestError(self.path or ":memory:", f"cannot be read ({error})") from error
        return rows


def _open_preview(path: Path | None) -> sqlite3.Connection:
    """A connection that reads the manifest at ``path`` and can write nothing there (see ManifestPreview)."""
    import sqlite3

    if path is not None and path.is_file():
        both = all(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
        uri = f"{path.absolute().as_uri()}?{'mode=ro' if both else 'immutable=1'}"
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as error:
            raise ManifestError(path, f"cannot be read ({error})") from error
        try:
            if _check_tables(path, db):
                return db
        except sqlite3.Error as error:
            db.close()
            raise ManifestError(path, f"not a usable database ({error})") from error
        except ManifestError:
            db.close()
            raise
        db.close()  # a database without tables: an empty manifest, as the run would make it
    db = sqlite3.connect(":memory:", isolation_level=None)
    for statement in _SCHEMA:
        db.execute(statement)
    return db


def read_records(path: Path) -> Iterator[Record]:
    """Every record of the manifest file at ``path``, read-only, one row at a time (no writer
    thread, nothing created): what a run merges from another's records.

    Raises:
        sqlite3.Error: the file is not a readable manifest.
    """
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for row in db.execute(_SELECT):
            yield Record(*row)
    finally:
        db.close()


def status_report(path: Path, *, limit: int = 50) -> str:
    """The text of ``downloader status DEST``: a line of counts, then up to ``limit`` failures.

    Args:
        path: the manifest file, or a destination directory (its :func:`default_path` is used).
        limit: most failures listed as ``URL: error``; a last line says how many more there are.

    Raises:
        ManifestError: there is no manifest there, or it cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        path = default_path(path)
    if not path.is_file():
        raise ManifestError(path, "not found (nothing has been recorded for this destination)")
    with Manifest(path) as manifest:
        counts = manifest.counts()
        lines = [_counts_line(counts)]
        for record in manifest.failures(limit):
            reason = " ".join((record.error or "no reason recorded").splitlines())  # one failure per line
            lines.append(f"{record.url}: {reason}")
    more = counts.get(Status.FAILED, 0) - (len(lines) - 1)
    if more > 0:
        lines.append(f"... and {more} more")
    return "\n".join(lines)


def _counts_line(counts: dict[str, int]) -> str:
    """``downloaded 3, skipped 1, failed 2, unchanged 0, pending 0 (6 URLs)``."""
    statuses = [*_REPORT_ORDER, *sorted(set(counts) - set(_REPORT_ORDER))]
    total = sum(counts.values())
    return ", ".join(f"{status} {counts.get(status, 0)}" for status in statuses) + f" ({total} URLs)"
