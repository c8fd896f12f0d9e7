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
ones through ``asyncio.to_thread``. :class:`Part` knows nothing of HTTP: what to
write where is decided by :class:`downloader.attempt.Attempt`, and :func:`conclude`
carries out its last step.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat
import threading
from email.utils import formatdate
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locking between runs
    fcntl = None  # type: ignore[assignment]

from downloader import core, memory, naming
from downloader.attempt import Attempt, Finish, Write
from downloader.checksums import Hasher
from downloader.core import ResumeState
from downloader.errors import IntegrityError, InvalidJob, LocalIOError, PartBusy
from downloader.jobs import Job, Result, Status
from downloader.naming import PART_SUFFIX, STATE_SUFFIX

__all__ = ["Part", "Segments", "conclude", "current_validators", "existing_result", "local_error", "write_all"]

log = logging.getLogger(__name__)
_PRIME_BLOCK = 1 << 20
_STATE_MAX = 1 << 20  # a state file is a few hundred bytes; a larger one is not ours


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


def current_validators(path: Path) -> core.Validators:
    """What the file at ``path`` tells of its version: its mtime, as an HTTP-date (set from
    Last-Modified when we downloaded it), for If-Modified-Since."""
    return core.Validators(None, formatdate(path.stat().st_mtime, usegmt=True))


def local_error(url: str, exc: OSError, path: Path | str | None = None) -> LocalIOError:
    """A LocalIOError naming the path and the errno text."""
    where = exc.filename2 or exc.filename or path  # filename2: the target of a rename
    return LocalIOError(url, f"cannot write {where}: {exc.strerror or exc}", exc.errno, str(where) if where else None)


def conclude(attempt: Attempt, part: Part, step: Finish) -> Result:
    """Carry out an attempt's Finish step: check the part and give it its final name."""
    if step.unchanged:
        return attempt.unchanged(part.path, part.final_size())
    if step.rehash and attempt.hasher is not None:
        part.hash_into(attempt.hasher, step.rehash)
    try:
        attempt.check()
    except IntegrityError:
        part.discard()  # a whole but wrong body cannot be resumed
        raise
    return attempt.result(part.finish(attempt.disposition, attempt.mtime))


class Part:
    """The file side of a transfer: ``NAME.part``, the state beside it, its lock, its finish.

    :meth:`open` opens and locks the part (creating it) and tells what it holds; then,
    as an :class:`~downloader.attempt.Attempt`'s steps say, :meth:`discard`,
    :meth:`ready` (before a body), :meth:`store` (a small body), :meth:`start_split`,
    writes to :attr:`fd`, and :meth:`finish`; :meth:`close` always, last.
    """

    def __init__(self, path: Path, job: Job, dest: Path) -> None:
        self.path = path
        self.job = job
        self.dest = dest
        # Names as strings: Path.with_name cost more than the part's own system calls.
        self.part = os.fspath(path) + PART_SUFFIX
        self.state_file = self.part + STATE_SUFFIX[len(PART_SUFFIX):]
        self.fd: int | None = None
        """The part, open for writing and locked, from open() to close()."""
        self._have = 0
        self._fresh = False
        """The part was created by this transfer (so no state file of an earlier run goes with it)."""
        self._state_on_disk = False
        self._finished = False

    def open(self) -> tuple[int, ResumeState | None]:
        """Open (creating it and its directory) and lock the part: the bytes it holds, and
        the state saved beside it (looked for only when it holds some).

        The part is created before the request goes out, not when the answer is in:
        a second run on the same destination then finds it locked and leaves the file
        to the first (measured: two runs on one list of 500 files share the work
        exactly; creating the part with the answer let them fetch 60 % of it twice).
        """
        try:
            self._open_part()
        except OSError as exc:
            raise local_error(self.job.url, exc, self.path.parent) from exc
        return self._have, self._load_state() if self._have else None

    def discard(self) -> None:
        """Empty the part (kept, and locked, until :meth:`close`) and remove its state."""
        try:
            _unlink(self.state_file)
            self._state_on_disk = False
            self._have = max(self._have, 1)  # make _truncate act
            self._truncate()
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc

    def ready(self, step: Write, hasher: Hasher | None) -> None:
        """Get the part ready for the body of ``step``: empty it and save the new state
        before any body byte, or hash the prefix it keeps."""
        assert self.fd is not None
        try:
            if step.offset == 0:
                # Empty the old part before a new state names another version of the file.
                self._truncate()
                if step.state is not None and not step.whole:
                    self.save_state(step.state)
            elif hasher is not None:
                self.hash_into(hasher, step.offset)
            if not step.whole:  # a whole body is written with pwrite at 0: no position to set
                os.lseek(self.fd, step.offset, os.SEEK_SET)
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc

    def store(self, step: Write, body: bytes) -> None:
        """A whole small body, in one trip to the disk (no state file)."""
        assert step.whole
        self.ready(step, None)
        assert self.fd is not None
        try:
            write_all(self.fd, body, 0)
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc

    def start_split(self, state: ResumeState) -> Segments:
        """Empty the part and save the segment table before any segment's byte; the segments."""
        try:
            self._truncate()
            self.save_state(state)
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc
        return Segments(self, state)

    def hash_into(self, hasher: Hasher, length: int) -> None:
        """Feed the part's first ``length`` bytes to ``hasher`` (a resumed prefix, a split file)."""
        assert self.fd is not None
        try:
            if _hash_part(self.fd, hasher, length) < length:
                raise OSError(f"{self.part} is shorter than {length} bytes")
        except OSError as exc:
            raise local_error(self.job.url, exc, self.part) from exc

    def finish(self, name: str | None, mtime: float | None) -> Path:
        """Give the checked part its final name (``name`` when the server chose one), the
        server's time as its mtime; the final path."""
        try:
            if name and name != self.path.name:
                self.path = self._place_without_clobber(self.path.with_name(name))
            else:
                os.replace(self.part, self.path)
            self._finished = True
            # A part this transfer created has no state but the one it saved: no unlink to try.
            if self._state_on_disk or not self._fresh:
                _unlink(self.state_file)  # also one left by a run that resumed nothing
        except OSError as exc:
            raise local_error(self.job.url, exc, self.path) from exc
        if mtime is not None:
            try:
                os.utime(self.path, (mtime, mtime))
            except OSError:
                pass  # the file is complete; a wrong mtime only costs a later re-download
        return self.path

    def final_size(self) -> int:
        """The size of the file under the final name (a 304 keeps it)."""
        try:
            return self.path.stat().st_size
        except OSError as exc:
            raise local_error(self.job.url, exc, self.path) from exc

    def close(self, *, discard: bool = False) -> None:
        """Release the lock; empty the part first when ``discard``; remove it if it holds
        nothing worth resuming."""
        if self.fd is None:
            return
        try:
            if discard:
                self.discard()
            if not self._finished:
                self._remove_if_empty()
        except OSError:
            pass  # best effort: an empty part is harmless
        finally:
            os.close(self.fd)
            self.fd = None

    def save_state(self, state: ResumeState) -> None:
        """Write ``state`` beside the part (a new file, then rename)."""
        temporary = self.state_file + f".{os.getpid() % 10**8}.tmp"
        try:
            # O_NOFOLLOW: a symlink planted under the temporary name is refused, not written through.
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(temporary, flags, 0o644)
            with open(fd, "w", encoding="utf-8") as file:
                file.write(state.dumps())
            os.replace(temporary, self.state_file)
        except OSError:
            _unlink(temporary)
            raise
        self._state_on_disk = True

    def _place_without_clobber(self, wanted: Path) -> Path:
        """Give the part a name the server chose, never replacing a file already there.

        ``os.link`` fails if the name exists, so two transfers that are told the same
        name cannot overwrite each other; the second one takes the collision name.
        """
        for candidate in (wanted, naming.collision_path(wanted, self.job.url)):
            naming.check_inside(self.dest, candidate, job=self.job)
            try:
                os.link(self.part, candidate)
            except FileExistsError:
                continue
            os.unlink(self.part)
            return candidate
        raise InvalidJob(self.job.url, f"{wanted} and its collision name are both taken; the body stays in {self.part}")

    def _remove_if_empty(self) -> None:
        assert self.fd is not None
        held = os.fstat(self.fd)
        still_ours = os.path.exists(self.part) and os.path.samestat(held, os.stat(self.part))
        if still_ours and held.st_size == 0 and not os.path.exists(self.state_file):
            os.unlink(self.part)

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
                os.makedirs(os.path.dirname(self.part) or ".", exist_ok=True)
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


class Segments:
    """The segments of one file fetched over several connections, written in place.

    Each segment's progress is counted as its bytes are written (``os.pwrite`` at
    their offset: no reassembly, no queue), and the table is saved beside the part
    every SAVE_EVERY bytes, after the bytes it counts: a killed run resumes every
    segment from at most that far back. Thread-safe (the threads engine writes from
    several workers).
    """

    SAVE_EVERY = 4 * 1024 * 1024

    def __init__(self, part: Part, state: ResumeState) -> None:
        assert state.segments is not None
        self.part = part
        self.state = state
        self.spans = [(start, end) for start, end, _ in state.segments]
        self.done = [done for _, _, done in state.segments]
        self.received = 0
        self._unsaved = 0
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one writer of the state file at a time

    def pending(self) -> list[int]:
        """Indices of the segments not complete yet."""
        return [i for i in range(len(self.spans)) if self.remaining(i)]

    def missing(self) -> int:
        return sum(self.remaining(i) for i in range(len(self.spans)))

    def remaining(self, index: int) -> int:
        start, end = self.spans[index]
        return end - start - self.done[index]

    def span(self, index: int) -> tuple[int, int]:
        """Where segment ``index`` continues, and where it ends."""
        start, end = self.spans[index]
        return start + self.done[index], end

    def write(self, index: int, chunk: bytes) -> int:
        """Write ``chunk`` where segment ``index`` continues, and count it; how many bytes
        were taken (no more than the segment still misses)."""
        assert self.part.fd is not None
        chunk = chunk[: self.remaining(index)]
        try:
            write_all(self.part.fd, chunk, self.span(index)[0])
        except OSError as exc:
            raise local_error(self.part.job.url, exc, self.part.part) from exc
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
        try:
            with self._save_lock:
                with self._lock:
                    segments = tuple((start, end, self.done[i]) for i, (start, end) in enumerate(self.spans))
                self.part.save_state(dataclasses.replace(self.state, segments=segments))
        except OSError as exc:
            raise local_error(self.part.job.url, exc, self.part.state_file) from exc


def _unlink(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def _hash_part(fd: int, hasher: Hasher, length: int) -> int:
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
