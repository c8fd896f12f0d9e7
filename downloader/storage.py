"""Files on disk: the part, the resume state beside it, the running hash, the atomic finish.

Layout for a final path ``NAME``:

* ``NAME.part``: the body as it arrives;
* ``NAME.part.state``: a small JSON :class:`~downloader.core.ResumeState`, written
  (new file, then rename) before the first body byte and never after;
* ``NAME``: appears only through ``os.replace`` of a part that passed every check,
  so a file under its final name is always complete.

While a transfer works on a part it holds an exclusive ``flock`` on it, so two runs
on one destination never interleave writes: the second one skips the file
(:class:`~downloader.errors.PartBusy`). The lock goes with the inode, so the part
is truncated in place, never unlinked and re-created, while it is held.

Every function here blocks on the file system; the asyncio engine calls the slow
ones through ``asyncio.to_thread``. :class:`Transfer` holds one attempt's state and
calls into :mod:`downloader.core` for each decision, so both engines share it.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import logging
import os
import stat
import threading
import time
from email.utils import formatdate
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locking between runs
    fcntl = None  # type: ignore[assignment]

from downloader import core, memory, naming
from downloader.config import Config
from downloader.core import Action, Decision, Request, ResumeState
from downloader.errors import IntegrityError, InvalidJob, LocalIOError, PartBusy, Refused, StallTimeout, TransferError
from downloader.jobs import Job, Result, Status
from downloader.naming import PART_SUFFIX, STATE_SUFFIX

__all__ = ["SMALL_BODY", "Splitter", "Transfer", "current_validators", "existing_result", "local_error", "request_options",
           "write_all"]

log = logging.getLogger(__name__)
_PRIME_BLOCK = 1 << 20
_STATE_MAX = 1 << 20  # a state file is a few hundred bytes; a larger one is not ours
SMALL_BODY = 64 * 1024
"""Bodies up to this size are stored in one trip to the disk, without a state file."""


def existing_result(job: Job, path: Path) -> Result | None:
    """A ``skipped`` result when the final file is already there, else None.

    Raises:
        InvalidJob: the final path is a symlink or a directory, or the file there has
            another size than ``size=``.
    """
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise local_error(job.url, exc, path) from exc
    size = found.st_size
    if stat.S_ISLNK(found.st_mode):
        raise naming.link_refusal(path, path, job)
    if stat.S_ISDIR(found.st_mode):
        raise InvalidJob(job.url, f"{path} is a directory")
    if job.size is not None and size != job.size:
        raise InvalidJob(job.url, f"{path} exists with {size} bytes but the list says size={job.size}; left untouched")
    return Result(job.url, Status.SKIPPED, str(path), size, 0, None, "already present", job.origin)


@functools.lru_cache(maxsize=8)
def request_options(config: Config) -> core.RequestOptions:
    """The request options of a run (built once per Config: the netrc table may be long)."""
    netrc = {host: (login, password) for host, login, password in config.netrc}
    return core.RequestOptions(config.user_agent, config.headers, config.user, netrc)


def current_validators(path: Path) -> core.Validators:
    """What the file at ``path`` tells of its version: its mtime, as an HTTP-date (set from
    Last-Modified when we downloaded it), for If-Modified-Since."""
    return core.Validators(None, formatdate(path.stat().st_mtime, usegmt=True))


def local_error(url: str, exc: OSError, path: Path | str | None = None) -> LocalIOError:
    """A LocalIOError naming the path and the errno text."""
    where = exc.filename2 or exc.filename or path  # filename2: the target of a rename
    return LocalIOError(url, f"cannot write {where}: {exc.strerror or exc}", exc.errno, str(where) if where else None)


class Transfer:
    """One attempt at one job: what the part holds, what to ask for, what arrived.

    The engine calls, in order: :meth:`prepare` (the request to send), :meth:`judge`
    (what the answer means; no I/O), then either :meth:`store` for a body that fits
    in one chunk (write and finish in one trip to the disk) or :meth:`begin`, a
    stream of writes to :attr:`fd` with :meth:`feed` after each, and :meth:`finish`;
    :meth:`close` always, last.
    """

    def __init__(self, job: Job, path: Path, config: Config, *, current: core.Validators | None = None) -> None:
        self.job = job
        self.current = current
        """Validators of the complete file already at ``path`` (--sync), for a conditional request."""
        self.path = path
        self.part = path.with_name(path.name + PART_SUFFIX)
        self.state_file = path.with_name(path.name + STATE_SUFFIX)
        self.config = config
        self.fd: int | None = None
        """The part, open for writing and locked, from prepare() to close()."""
        self.request: Request | None = None
        self.state: ResumeState | None = None
        self.decision: Decision | None = None
        self.received = 0
        self._have = 0
        self._restarts = 0
        self._state_on_disk = False
        self._discard_on_close = False
        self._fresh = False
        """The part was created by this transfer (so no state file of an earlier run goes with it)."""
        self._finished = False
        self._hasher = hashlib.sha256() if job.sha256 else None
        self._validators = core.Validators()
        self._split_refused = False
        self._disposition: str | None = None
        self._meter: core.LowSpeedMeter | None = None

    @property
    def open_mode(self) -> str:
        """How a body is written to the part by path: append or truncate."""
        assert self.decision is not None
        return "ab" if self.decision.offset else "wb"

    @property
    def fits_one_chunk(self) -> bool:
        """The answer is a whole body of known length of at most SMALL_BODY bytes (and one chunk).

        Such a body is read at once and stored by :meth:`store` without a state file:
        an interrupted small body is fetched again from zero, which costs less than
        the state file would on every small file.
        """
        decision = self.decision
        limit = min(SMALL_BODY, self.config.chunk_size)
        return (decision is not None and decision.action is Action.WRITE and decision.offset == 0
                and decision.total is not None and decision.total <= limit)

    def prepare(self) -> Request:
        """Open and lock the part (creating it and its directory), read its state, and
        return the request to send.

        The part is created before the request goes out, not when the answer is in:
        a second run on the same destination then finds it locked and leaves the file
        to the first (measured: two runs on one list of 500 files share the work
        exactly; creating the part with the answer let them fetch 60 % of it twice).
        """
        try:
            self._open_part()
        except OSError as exc:
            raise local_error(self.job.url, exc, self.path.parent) from exc
        self.state = self._load_state() if self._have and self.config.resume and not self._split_refused else None
        if self._have and self.state is None:
            log.info("%s: restarting %s (no usable resume state)", self.job.url, self.part)
        have = self._have if self.state else 0
        self.request = core.plan_request(self.job.url, have=have, state=self.state, options=request_options(self.config),
                                         current=self.current)
        return self.request

    def next_request(self) -> Request:
        """The request to send after a REDIRECT or a RESTART answer.

        Raises:
            TransferError: a second RESTART in one attempt (the server keeps answering unusable ranges).
        """
        assert self.decision is not None and self.request is not None
        if self.decision.action is Action.REDIRECT:
            return self.request
        self._restarts += 1
        if self._restarts > 1:
            raise TransferError(self.job.url, "the server twice answered with a range that cannot be used")
        return self.prepare()

    def judge(self, status: int, headers: object) -> Decision:
        """What the answer means for this part (no I/O; see core.judge and core.follow_redirect)."""
        assert self.request is not None
        if status in core.REDIRECT_STATUSES:
            self.request = core.follow_redirect(self.request, headers, max_redirects=self.config.max_redirects,  # type: ignore[arg-type]
                                                options=request_options(self.config))
            self.decision = Decision(Action.REDIRECT, self.request.offset)
            return self.decision
        decision = core.judge(self.request, status, headers, job=self.job, state=self.state,  # type: ignore[arg-type]
                              max_filesize=self.config.max_filesize)
        self._validators = core.Validators(headers.get("ETag"), headers.get("Last-Modified"))  # type: ignore[attr-defined]
        if self.config.content_disposition and self.job.out is None:
            self._disposition = naming.name_from_disposition(headers.get("Content-Disposition"))  # type: ignore[attr-defined]
        self.decision = decision
        if decision.reason:
            log.info("%s: %s", self.job.url, decision.reason)
        if self.config.speed_limit:
            self._meter = core.LowSpeedMeter(self.config.speed_limit, self.config.speed_time, time.monotonic())
        return decision

    def begin(self) -> None:
        """Get the part ready for the judged answer: discard it, empty it (and save the
        new state before any body byte), or hash its prefix."""
        self._ready(save_state=True)

    def _ready(self, *, save_state: bool) -> None:
        decision = self.decision
        assert decision is not None and self.fd is not None
        if decision.action in (Action.REDIRECT, Action.UNCHANGED):
            return
        try:
            if decision.action is Action.RESTART:
                self.discard()
            elif decision.action is Action.WRITE and decision.offset == 0:
                # Empty the old part before a new state names another version of the file.
                self._truncate()
                if save_state:
                    self._save_state(decision.state)
            else:
                self._prime_hash(decision.offset)
            os.lseek(self.fd, decision.offset, os.SEEK_SET)
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc

    def accept(self, status: int, headers: object) -> Decision:
        """:meth:`judge` and :meth:`begin` in one call."""
        decision = self.judge(status, headers)
        self.begin()
        return decision

    def store(self, body: bytes) -> Result:
        """Write a whole small body, already :meth:`feed`-ed piece by piece as it arrived,
        and finish: no state file, one trip to the disk."""
        assert self.fits_one_chunk
        self._ready(save_state=False)
        assert self.fd is not None
        try:
            write_all(self.fd, body, 0)  # a small body is always a whole file
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc
        return self.finish()

    def feed(self, chunk: bytes) -> None:
        """Account for a chunk just written to the part.

        Raises:
            StallTimeout: the transfer has been slower than the low-speed limit for too long.
        """
        self.received += len(chunk)
        memory.note_written(len(chunk))
        if self._hasher is not None:
            self._hasher.update(chunk)
        limit = self.config.max_filesize
        if limit is not None and self.decision is not None and self.decision.offset + self.received > limit:
            # It can never be finished under this limit: emptied by close(), once the
            # engine has no write in flight that could land after the truncation.
            self._discard_on_close = True
            raise Refused(self.job.url, f"body grew past --max-filesize {limit} bytes")
        if self._meter is not None and self._meter.too_slow(len(chunk), time.monotonic()):
            limit, window = self.config.speed_limit, self.config.speed_time
            raise StallTimeout(self.job.url, f"too slow: under {limit} bytes/s for {window:g} s")

    def finish(self) -> Result:
        """Check the part and give it its final name; the result of the job."""
        assert self.decision is not None
        if self.decision.action is Action.UNCHANGED:
            return self._unchanged()
        size = self.decision.offset + self.received
        digest = self._hasher.hexdigest() if self._hasher else None
        return self._complete(size, self.decision.total, digest, self.received)

    def _complete(self, size: int, total: int | None, digest: str | None, received: int) -> Result:
        try:
            core.check_complete(self.job, size=size, total=total, sha256=digest)
        except IntegrityError:
            self.discard()  # a whole but wrong body cannot be resumed
            raise
        try:
            if self._disposition and self._disposition != self.path.name:
                self.path = self._place_without_clobber(self.path.with_name(self._disposition))
            else:
                os.replace(self.part, self.path)
            self._finished = True
            # A part this transfer created has no state but the one it saved: no unlink to try.
            if self._state_on_disk or not self._fresh:
                self.state_file.unlink(missing_ok=True)  # also one left by a run that resumed nothing
        except OSError as exc:
            raise local_error(self.job.url, exc, self.path) from exc
        self._stamp()
        final_url = self.request.url if self.request else None
        return Result(self.job.url, Status.DOWNLOADED, str(self.path), size, received, digest, None,
                      self.job.origin, final_url, self._validators.etag, self._validators.last_modified)

    # -- --split: one file over several ranged connections ------------------------------

    def split(self, headers: object) -> Splitter | None:
        """After :meth:`judge`: a Splitter when this whole-file answer should be fetched
        over several connections (--split), with its segment table saved before any byte."""
        decision, config = self.decision, self.config
        if config.split < 2 or self._split_refused or decision is None or decision.action is not Action.WRITE \
                or decision.offset:
            return None
        accepts = "bytes" in headers.get("Accept-Ranges", "").lower()  # type: ignore[attr-defined]
        total, state = decision.total, decision.state
        if not accepts or total is None or total < 2 * config.min_split_size or state is None or not state.validator:
            return None
        segments = core.plan_segments(total, min(config.split, config.host_limit), config.min_split_size)
        if len(segments) < 2:
            return None
        split_state = dataclasses.replace(state, segments=segments)
        try:
            self._truncate()
            self._save_state(split_state)
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc
        return Splitter(self, split_state)

    def resumed_split(self) -> Splitter | None:
        """After :meth:`prepare`: a Splitter continuing the segments a killed run left."""
        if self.state is None or self.state.segments is None or self._split_refused:
            return None
        return Splitter(self, self.state)

    def refuse_split(self) -> Request:
        """The server will not serve these ranges: drop the segments and plan one stream from zero."""
        self._split_refused = True
        self.discard()
        self.state = None
        return self.prepare()

    def finish_split(self, total: int, received: int) -> Result:
        """Check a part whose ``total`` bytes of segments are all in and give it its final name."""
        digest = None
        if self.job.sha256:
            # Segments arrive out of order: the part is read once, at the end.
            assert self.fd is not None
            hasher = hashlib.sha256()
            _hash_part(self.fd, hasher, total)
            digest = hasher.hexdigest()
        return self._complete(total, total, digest, received)

    def _place_without_clobber(self, wanted: Path) -> Path:
        """Give the part a name the server chose, never replacing a file already there.

        ``os.link`` fails if the name exists, so two transfers that are told the same
        name cannot overwrite each other; the second one takes the collision name.
        """
        for candidate in (wanted, naming.collision_path(wanted, self.job.url)):
            naming.check_inside(self.config.dest, candidate, job=self.job)
            try:
                os.link(self.part, candidate)
            except FileExistsError:
                continue
            os.unlink(self.part)
            return candidate
        raise InvalidJob(self.job.url, f"{wanted} and its collision name are both taken; the body stays in {self.part}")

    def _unchanged(self) -> Result:
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise local_error(self.job.url, exc, self.path) from exc
        current = self.current or core.Validators()
        return Result(self.job.url, Status.UNCHANGED, str(self.path), size, 0, None, None, self.job.origin,
                      self.request.url if self.request else None, current.etag, current.last_modified)

    def _stamp(self) -> None:
        """Give the file the server's Last-Modified as its mtime (like wget -N, curl -R), so a later
        --sync without a manifest can ask If-Modified-Since from the file itself."""
        when = core.parse_http_date(self._validators.last_modified)
        if when is not None:
            try:
                os.utime(self.path, (when, when))
            except OSError:
                pass  # the file is complete; a wrong mtime only costs a later re-download

    def discard(self) -> None:
        """Empty the part (kept, and locked, until :meth:`close`) and remove its state."""
        self.state_file.unlink(missing_ok=True)
        self._state_on_disk = False
        self._have = max(self._have, 1)  # make _truncate act
        self._truncate()

    def close(self) -> None:
        """Release the lock; remove the part if it holds nothing worth resuming."""
        if self.fd is None:
            return
        try:
            if self._discard_on_close:
                self.discard()
            if not self._finished:
                self._remove_if_empty()
        except OSError:
            pass  # best effort: an empty part is harmless
        finally:
            os.close(self.fd)
            self.fd = None

    def _remove_if_empty(self) -> None:
        assert self.fd is not None
        held = os.fstat(self.fd)
        still_ours = os.path.exists(self.part) and os.path.samestat(held, os.stat(self.part))
        if still_ours and held.st_size == 0 and not self.state_file.exists():
            self.part.unlink()

    def _open_part(self) -> None:
        """Open (creating it and its directory when missing) and lock the part; learn its size."""
        if self.fd is not None:
            return
        fd = self._create_part()
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PartBusy(self.job.url, f"{self.part} is being written by another run; left to it") from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self._have = 0 if self._fresh else os.fstat(fd).st_size

    def _create_part(self) -> int:
        """The part's descriptor. A new part is the common case and costs one call: O_EXCL
        tells it apart from one left by an earlier run, and a missing directory shows up
        as ENOENT (created then, never checked in advance)."""
        # O_NOFOLLOW: a symlink planted at NAME.part is refused, never written through.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            try:
                fd = os.open(self.part, flags | os.O_EXCL, 0o644)
            except FileNotFoundError:
                os.makedirs(self.part.parent, exist_ok=True)
                fd = os.open(self.part, flags | os.O_EXCL, 0o644)
            self._fresh = True
            return fd
        except FileExistsError:
            pass
        try:
            fd = os.open(self.part, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise naming.link_refusal(self.path, self.part, self.job) from None
            raise
        self._fresh = False
        return fd

    def _truncate(self) -> None:
        if self._have and self.fd is not None:
            os.ftruncate(self.fd, 0)
            self._have = 0

    def _load_state(self) -> ResumeState | None:
        try:
            fd = os.open(self.state_file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
            with open(fd, encoding="utf-8") as file:
                text = file.read(_STATE_MAX)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise naming.link_refusal(self.path, self.state_file, self.job) from None
            return None
        except UnicodeDecodeError:
            return None
        self._state_on_disk = True
        return ResumeState.loads(text, self.job.url)

    def _save_state(self, state: ResumeState | None) -> None:
        if state is None:
            return
        temporary = self.state_file.with_name(self.state_file.name + f".{os.getpid() % 10**8}.tmp")
        try:
            # O_NOFOLLOW: a symlink planted under the temporary name is refused, not written through.
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(temporary, flags, 0o644)
            with open(fd, "w", encoding="utf-8") as file:
                file.write(state.dumps())
            os.replace(temporary, self.state_file)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
        self._state_on_disk = True

    def _prime_hash(self, offset: int) -> None:
        """Hash the prefix already in the part once, so the digest covers the whole file."""
        if self._hasher is None or not offset:
            return
        assert self.fd is not None
        if _hash_part(self.fd, self._hasher, offset) < offset:
            raise OSError(f"{self.part} is shorter than {offset} bytes")


class Splitter:
    """The segments of one file fetched over several connections, written in place.

    Each segment's progress is counted as its bytes are written (``os.pwrite`` at
    their offset: no reassembly, no queue), and the table is saved beside the part
    every SAVE_EVERY bytes, after the bytes it counts: a killed run resumes every
    segment from at most that far back. Thread-safe (the threads engine writes from
    several workers).
    """

    SAVE_EVERY = 4 * 1024 * 1024

    def __init__(self, transfer: Transfer, state: ResumeState) -> None:
        assert state.segments is not None
        self.transfer = transfer
        self.state = state
        self.done = [done for _, _, done in state.segments]
        self.received = 0
        self._unsaved = 0
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one writer of the state file at a time

    @property
    def total(self) -> int:
        assert self.state.segments is not None
        return self.state.segments[-1][1]

    def pending(self) -> list[int]:
        """Indices of the segments not complete yet."""
        assert self.state.segments is not None
        return [i for i, (start, end, _) in enumerate(self.state.segments) if start + self.done[i] < end]

    def missing(self) -> int:
        assert self.state.segments is not None
        return sum(end - start - self.done[i] for i, (start, end, _) in enumerate(self.state.segments))

    def request(self, index: int) -> Request:
        assert self.state.segments is not None
        start, end, _ = self.state.segments[index]
        options = request_options(self.transfer.config)
        # The URL the first answer came from, after its redirects (the job's URL on a resume).
        url = self.transfer.request.url if self.transfer.request else self.transfer.job.url
        return core.segment_request(url, start + self.done[index], end, self.state, options)

    def fits(self, index: int, request: Request, status: int, headers: object) -> bool:
        assert self.state.segments is not None
        return core.segment_fits(request, status, headers, end=self.state.segments[index][1], state=self.state)  # type: ignore[arg-type]

    def remaining(self, index: int) -> int:
        assert self.state.segments is not None
        start, end, _ = self.state.segments[index]
        return end - start - self.done[index]

    def write(self, index: int, chunk: bytes) -> int:
        """Write ``chunk`` where segment ``index`` continues, and count it; how many bytes
        were taken (no more than the segment still misses)."""
        assert self.state.segments is not None and self.transfer.fd is not None
        chunk = chunk[: self.remaining(index)]
        position = self.state.segments[index][0] + self.done[index]
        try:
            write_all(self.transfer.fd, chunk, position)
        except OSError as exc:
            raise local_error(self.transfer.job.url, exc, self.transfer.part) from exc
        with self._lock:
            self.done[index] += len(chunk)
            self.received += len(chunk)
            self._unsaved += len(chunk)
            due = self._unsaved >= self.SAVE_EVERY
            if due:
                self._unsaved = 0
        memory.note_written(len(chunk))
        if due:
            self.save()
        return len(chunk)

    def save(self) -> None:
        """Save the segment table as it stands (what it counts is already written)."""
        assert self.state.segments is not None
        try:
            with self._save_lock:
                with self._lock:
                    segments = tuple((start, end, self.done[i]) for i, (start, end, _) in enumerate(self.state.segments))
                self.transfer._save_state(dataclasses.replace(self.state, segments=segments))
        except OSError as exc:
            raise local_error(self.transfer.job.url, exc, self.transfer.state_file) from exc

    def finish(self) -> Result:
        return self.transfer.finish_split(self.total, self.received)


def _hash_part(fd: int, hasher: hashlib._Hash, length: int) -> int:
    """Feed the first ``length`` bytes of ``fd`` to ``hasher``; how many there were."""
    position = 0
    while position < length:
        block = os.pread(fd, min(_PRIME_BLOCK, length - position), position)
        if not block:
            break
        hasher.update(block)
        position += len(block)
    return position


def write_all(fd: int, data: bytes, position: int) -> None:
    """Write all of ``data`` at ``position`` of ``fd`` (a write may take only part of it);
    the descriptor's own offset is left where it was."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written
