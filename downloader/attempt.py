"""One attempt at one file, as a state machine with no I/O.

:class:`Attempt` is told what is on disk and what the server answered, and says what
to do next, as a *step*:

* :class:`Send`: send this request (emptying the part first when ``discard``), then
  give the answer's status and headers to :meth:`Attempt.answer`;
* :class:`Write`: put the answer's body in the part from ``offset`` (saving ``state``
  beside it first; a ``whole`` body is small and stored in one trip), feeding each
  piece to :meth:`Attempt.feed`, then ask :meth:`Attempt.ended`;
* :class:`Split`: fetch the file's segments over several connections (the first one
  from this answer when ``first``), then tell :meth:`Attempt.split_ended`;
* :class:`Finish`: nothing more to receive: check and name the file
  (:func:`downloader.storage.conclude`).

An error the answer makes final (a status, a size against the list, a digest) is
raised as the package's :class:`~downloader.errors.DownloadError`. The engines perform
the steps with their libraries and decide nothing; every rule lives here and in
:mod:`downloader.core`, tested with plain values.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from downloader import checksums, core, digests, memory, naming
from downloader.config import Config
from downloader.core import Action, Request, ResumeState, Validators
from downloader.errors import Refused, StallTimeout, TransferError
from downloader.jobs import Job, Result, Status

if TYPE_CHECKING:
    from pathlib import Path

    from downloader.cookies import Cookies

__all__ = ["SMALL_BODY", "Attempt", "Finish", "Send", "Split", "Step", "Write", "request_options"]

log = logging.getLogger(__name__)

SMALL_BODY = 64 * 1024
"""Bodies up to this size are stored in one trip to the disk, without a state file."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request``; empty the part first when ``discard`` (its bytes cannot be used)."""

    request: Request
    discard: bool = False


@dataclass(frozen=True, slots=True)
class Write:
    """Put the answer's body in the part from ``offset`` (0: empty the part first).

    ``state`` is saved beside the part before the first body byte. A ``whole`` body is
    small: read it at once and store it without a state file (an interrupted small body
    is fetched again, which costs less than a state file on every small file)."""

    offset: int
    total: int | None
    state: ResumeState | None = None
    whole: bool = False


@dataclass(frozen=True, slots=True)
class Split:
    """Fetch the file as the segments of ``state``, one connection each; when ``first``,
    segment 0 is the body of the answer just judged (the part is emptied and ``state``
    saved before any byte)."""

    state: ResumeState
    first: bool


@dataclass(frozen=True, slots=True)
class Finish:
    """Nothing more to receive. ``unchanged``: the file there is current (304). ``rehash``:
    bytes of the part to hash from its start before checking (a complete part, a split)."""

    unchanged: bool = False
    rehash: int = 0


Step = Send | Write | Split | Finish


@functools.lru_cache(maxsize=8)
def request_options(config: Config, want_digest: bool = False) -> core.RequestOptions:
    """The request options of a run (built once per Config: the netrc table may be long);
    ``want_digest``: ask for the server's digest (Want-Repr-Digest)."""
    netrc = {host: (login, password) for host, login, password in config.netrc}
    extra = (("Want-Repr-Digest", digests.WANT_REPR_DIGEST),) if want_digest else ()
    return core.RequestOptions(config.user_agent, config.headers + extra, config.user, netrc)


class Attempt:
    """The protocol side of one attempt at ``job``: requests, answers, what arrived."""

    def __init__(self, job: Job, config: Config, *, current: Validators | None = None,
                 cookies: Cookies | None = None) -> None:
        self.job = job
        self.config = config
        self.current = current
        """Validators of the complete file already there (--sync), for a conditional request."""
        self.request: Request | None = None
        self.state: ResumeState | None = None
        """What the part holds, as its saved state says (None: nothing usable)."""
        self.offset = 0
        """Where the body being received goes in the part."""
        self.total: int | None = None
        self.received = 0
        self.hasher: checksums.Hashers | None = None
        """Fed the body when a digest is to be checked (see :meth:`_expect`)."""
        self._expected: list[tuple[str, str, str | None]] = []
        """(algorithm, hex digest, the server's header or None for the list's) to check."""
        self._expect({}, whole_body=False)
        self.spoiled = False
        """The part can never be finished (it grew past --max-filesize): empty it at the end."""
        self.disposition: str | None = None
        """The file name the server gave (Content-Disposition), when it is to be used."""
        self._options = request_options(config, config.server_digest and job.checksum is None)
        self._validators = Validators()
        self._restarts = 0
        self._split_refused = False
        self._meter: core.LowSpeedMeter | None = None
        self._cookies = cookies
        """The run's jar: asked on every request, told every Set-Cookie (None: no cookies)."""

    # -- requests and answers ------------------------------------------------------------

    def begin(self, have: int, state: ResumeState | None) -> Send | Split:
        """The first step, given the bytes in the part and the state saved beside it."""
        usable = state if have and self.config.resume and not self._split_refused else None
        if usable is not None and usable.url != self.job.url:
            usable = None  # a state for another URL says nothing of this part
        if have and usable is None:
            log.info("%s: restarting the part (no usable resume state)", self.job.url)
        self.state = usable
        if usable is not None and usable.segments is not None:
            return Split(usable, first=False)
        self.request = self._with_cookies(core.plan_request(self.job.url, have=have if usable else 0, state=usable,
                                                            options=self._options, current=self.current))
        return Send(self.request)

    def answer(self, status: int, headers: Mapping[str, str], set_cookies: Sequence[str] = ()) -> Step:
        """What to do with the answer to the last request; ``set_cookies``: each of its
        ``Set-Cookie`` values (a mapping holds one), kept whatever the status (a login's
        302 sets the session).

        Raises:
            DownloadError: the answer ends the attempt (see core.judge, core.follow_redirect).
        """
        assert self.request is not None
        if self._cookies is not None and set_cookies:
            self._cookies.store(self.request.url, set_cookies)
        if status in core.REDIRECT_STATUSES:
            self.request = self._with_cookies(core.follow_redirect(
                self.request, headers, max_redirects=self.config.max_redirects, options=self._options))
            return Send(self.request)
        decision = core.judge(self.request, status, headers, job=self.job, state=self.state,
                              max_filesize=self.config.max_filesize)
        if decision.reason:
            log.info("%s: %s", self.job.url, decision.reason)
        if decision.action is Action.RESTART:
            return self._restart()
        if decision.action is Action.UNCHANGED:
            return Finish(unchanged=True)
        # A 206 or 416 need not repeat the validators (RFC 9110 §15.3.7): the saved ones hold.
        saved = self.state if decision.offset and self.state is not None else ResumeState(self.job.url)
        self._validators = Validators(headers.get("ETag") or saved.etag, headers.get("Last-Modified") or saved.last_modified)
        if self.config.content_disposition and self.job.out is None:
            self.disposition = naming.name_from_disposition(headers.get("Content-Disposition"))
        self.offset, self.total = decision.offset, decision.total
        self._expect(headers, whole_body=status == 200)
        if decision.action is Action.COMPLETE:
            return Finish(rehash=decision.offset)
        if self.config.speed_limit:
            self._meter = core.LowSpeedMeter(self.config.speed_limit, self.config.speed_time, time.monotonic())
        total, limit = decision.total, min(SMALL_BODY, self.config.chunk_size)
        if decision.offset == 0 and total is not None and total <= limit:
            return Write(0, total, decision.state, whole=True)
        return self._split(decision, headers) or Write(decision.offset, total, decision.state)

    def _expect(self, headers: Mapping[str, str], *, whole_body: bool) -> None:
        """The digests to check the file against: the list's, then the strongest the answer
        states of the whole file (unless --no-server-digest); fresh hashers for them."""
        expected: list[tuple[str, str, str | None]] = []
        if self.job.checksum is not None:
            algorithm, _, hexdigest = self.job.checksum.partition(":")
            expected.append((algorithm, hexdigest, None))
        if self.config.server_digest and headers:
            stated = digests.server_digest(headers, whole_body=whole_body)
            if stated is not None:
                expected.append(stated)
        self._expected = expected
        self.hasher = checksums.Hashers(algorithm for algorithm, _, _ in expected) if expected else None

    def _split(self, decision: core.Decision, headers: Mapping[str, str]) -> Split | None:
        """--split: segments for a whole-file answer that is worth several connections."""
        config, total, state = self.config, decision.total, decision.state
        if config.split < 2 or self._split_refused or decision.offset or total is None or state is None:
            return None
        if total < 2 * config.min_split_size or not state.validator \
                or "bytes" not in headers.get("Accept-Ranges", "").lower():
            return None
        segments = core.plan_segments(total, min(config.split, config.host_limit), config.min_split_size)
        if len(segments) < 2:
            return None
        self.state = dataclasses.replace(state, segments=segments)
        return Split(self.state, first=True)

    def _restart(self) -> Send:
        """The answer cannot continue the part: empty it and ask for the whole file, once."""
        self._restarts += 1
        if self._restarts > 1:
            raise TransferError(self.job.url, "the server twice answered with a range that cannot be used")
        return self._from_zero()

    def _from_zero(self) -> Send:
        self.state = None
        self.request = self._with_cookies(core.plan_request(self.job.url, have=0, state=None, options=self._options,
                                                            current=self.current))
        return Send(self.request, discard=True)

    def _with_cookies(self, request: Request) -> Request:
        """``request`` with the jar's cookies for its URL, after any -H Cookie (kept for the origin's host)."""
        found = self._cookies.header_for(request.url) if self._cookies is not None else None
        return core.with_cookie(request, found) if found else request

    # -- the body ------------------------------------------------------------------------

    def feed(self, chunk: bytes | memoryview) -> None:
        """Account for a piece of the body just written to the part.

        Raises:
            Refused: the body grew past --max-filesize (the part is then spoiled).
            StallTimeout: slower than the low-speed limit for too long.
        """
        self.count(len(chunk))
        if self.hasher is not None:
            self.hasher.update(chunk)

    def count(self, size: int) -> None:
        """:meth:`feed` without the bytes, for a body that is not hashed on its way."""
        self.received += size
        memory.note_written(size)
        limit = self.config.max_filesize
        if limit is not None and self.offset + self.received > limit:
            self.spoiled = True
            raise Refused(self.job.url, f"body grew past --max-filesize {limit} bytes")
        if self._meter is not None and self._meter.too_slow(size, time.monotonic()):
            limit, window = self.config.speed_limit, self.config.speed_time
            raise StallTimeout(self.job.url, f"too slow: under {limit} bytes/s for {window:g} s")

    def ended(self) -> Finish:
        """The body of a Write step has ended (the engine saw its end)."""
        return Finish()

    # -- --split -------------------------------------------------------------------------

    def segment_request(self, start: int, end: int) -> Request:
        """The ranged GET for bytes [start, end) of the split file."""
        assert self.state is not None
        # The URL the first answer came from, after its redirects (the job's URL on a resume).
        url = self.request.url if self.request else self.job.url
        return self._with_cookies(core.segment_request(url, start, end, self.state, self._options, origin=self.job.url))

    def segment_fits(self, request: Request, status: int, headers: Mapping[str, str], end: int,
                     set_cookies: Sequence[str] = ()) -> bool:
        """Whether the answer to a segment request is that range of the same file (its
        ``set_cookies`` are kept, as for any answer)."""
        assert self.state is not None
        if self._cookies is not None and set_cookies:
            self._cookies.store(request.url, set_cookies)
        return core.segment_fits(request, status, headers, end=end, state=self.state)

    def split_ended(self, served: bool, received: int) -> Send | Finish:
        """The segments are over: all of them ``served`` (``received`` bytes in this
        attempt), or the server refused a range: then one stream from zero."""
        if not served:
            self._split_refused = True
            return self._from_zero()
        assert self.state is not None and self.state.size is not None
        # What was in the part before this attempt counts as the offset: the size is the total.
        self.offset, self.total, self.received = self.state.size - received, self.state.size, received
        if not self._validators.etag and not self._validators.last_modified:
            self._validators = Validators(self.state.etag, self.state.last_modified)
        return Finish(rehash=self.state.size)

    # -- the end -------------------------------------------------------------------------

    def check(self) -> None:
        """Raise unless what the part holds is the whole, right file (core.check_complete,
        then every expected digest: core.check_digest)."""
        core.check_complete(self.job, size=self.offset + self.received, total=self.total)
        for algorithm, expected, header in self._expected:
            assert self.hasher is not None
            core.check_digest(self.job.url, algorithm, expected, self.hasher.digest_of(algorithm), header)

    @property
    def mtime(self) -> float | None:
        """The server's Last-Modified as seconds, to give the file (wget -N, curl -R)."""
        return core.parse_http_date(self._validators.last_modified)

    def result(self, path: Path) -> Result:
        """The result of a file finished at ``path``, with the first digest checked as its checksum."""
        digest = None
        if self.hasher is not None:
            algorithm = self._expected[0][0]
            digest = checksums.checksum(algorithm, self.hasher.digest_of(algorithm))
        return Result(self.job.url, Status.DOWNLOADED, str(path), self.offset + self.received, self.received, digest,
                      None, self.job.origin, self.request.url if self.request else None, self._validators.etag,
                      self._validators.last_modified)

    def unchanged(self, path: Path, size: int) -> Result:
        """The result when the file at ``path`` (``size`` bytes) is current."""
        current = self.current or Validators()
        return Result(self.job.url, Status.UNCHANGED, str(path), size, 0, None, None, self.job.origin,
                      self.request.url if self.request else None, current.etag, current.last_modified)
