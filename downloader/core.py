"""Protocol decisions, free of I/O: what to ask the server, and what its answer means.

Both engines call these functions with plain values (what is on disk, the status,
the headers) and do what the returned :class:`Decision` says. Nothing here reads a
socket or a file, so every rule is tested with plain function calls.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from datetime import datetime, timezone
from typing import ClassVar

from downloader.errors import BodyIncomplete, HTTPStatusError, IntegrityError, MalformedResponse, Refused
from downloader.hosts import same_origin
from downloader.jobs import Job

__all__ = [
    "RETRYABLE_STATUSES",
    "Action",
    "Decision",
    "LowSpeedMeter",
    "REDIRECT_STATUSES",
    "Request",
    "RequestOptions",
    "Validators",
    "ResumeState",
    "check_complete",
    "follow_redirect",
    "framing_fault",
    "judge",
    "parse_content_range",
    "plan_segments",
    "segment_fits",
    "segment_request",
    "with_cookie",
    "parse_http_date",
    "parse_retry_after",
    "plan_request",
    "proxy_for",
    "request_headers",
]

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Statuses worth another attempt (RFC 9110 §15.5.9, §15.6; RFC 8470; RFC 6585 §4)."""

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)$", re.ASCII)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)$", re.ASCII)
_DIGITS = re.compile(r"[0-9]+")
_OBS_FOLD = re.compile(r"\r?\n[ \t]")


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What is kept beside a part so that a later run can resume it safely."""

    VERSION: ClassVar[int] = 1

    url: str
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    """The full size of the file, when the server said it."""
    segments: tuple[tuple[int, int, int], ...] | None = None
    """--split: (start, end, done) of each segment; the part then has holes, and its
    size says nothing of what is there."""

    @property
    def strong_etag(self) -> str | None:
        """The ETag if it is strong; RFC 9110 §13.1.5 forbids weak ones in If-Range."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return None

    @property
    def validator(self) -> str | None:
        """What to send in If-Range: the strong ETag, else Last-Modified, else None.

        RFC 9110 §13.1.5: a date may be sent only when there is no entity tag at
        all, so a weak ETag leaves no usable validator (resume then needs size proof).
        """
        if self.etag:
            return self.strong_etag
        return self.last_modified

    def dumps(self) -> str:
        fields: dict[str, object] = {"url": self.url, "etag": self.etag, "last_modified": self.last_modified,
                                     "size": self.size}
        if self.segments is not None:
            fields["segments"] = [list(s) for s in self.segments]
        return json.dumps({"version": self.VERSION, **fields})

    @classmethod
    def loads(cls, text: str, url: str) -> ResumeState | None:
        """Parse a saved state; None when it is damaged, of another version or for another URL."""
        try:
            data = json.loads(text)
            state = cls(data["url"], data["etag"], data["last_modified"], data["size"])
            valid = type(data["version"]) is int and data["version"] == cls.VERSION and state.url == url
            valid = valid and (state.size is None or (type(state.size) is int and state.size >= 0))
            valid = valid and all(v is None or isinstance(v, str) for v in (state.etag, state.last_modified))
            if valid and data.get("segments") is not None:
                segments = tuple((int(a), int(b), int(c)) for a, b, c in data["segments"])
                state = dataclasses.replace(state, segments=segments)
                valid = _segments_valid(segments, state.size)
        except (ValueError, KeyError, TypeError):
            return None
        return state if valid else None

    @classmethod
    def from_headers(cls, url: str, headers: Mapping[str, str], size: int | None) -> ResumeState:
        return cls(url, headers.get("ETag"), headers.get("Last-Modified"), size)


def _segments_valid(segments: tuple[tuple[int, int, int], ...], size: int | None) -> bool:
    """Segments must tile [0, size) in order, each with 0 <= done <= its length."""
    position = 0
    for start, end, done in segments:
        if start != position or end <= start or not 0 <= done <= end - start:
            return False
        position = end
    return bool(segments) and position == size


def plan_segments(total: int, parts: int, min_size: int) -> tuple[tuple[int, int, int], ...]:
    """Split ``total`` bytes into at most ``parts`` segments of at least ``min_size`` bytes."""
    count = max(1, min(parts, total // max(1, min_size)))
    size = -(-total // count)
    return tuple((start, min(total, start + size), 0) for start in range(0, total, size))


def segment_request(url: str, start: int, end: int, state: ResumeState, options: RequestOptions, *,
                    origin: str) -> Request:
    """A ranged GET for bytes [start, end) of the file ``state`` describes (If-Range guarded),
    at ``url`` (where the job's URL ``origin`` led): credentials only as for a redirect hop."""
    headers = request_headers(url, origin=origin, options=options)
    headers["Range"] = f"bytes={start}-{end - 1}"
    if state.validator:
        headers["If-Range"] = state.validator
    return Request(url, headers, start, origin)


def segment_fits(request: Request, status: int, headers: Mapping[str, str], *, end: int, state: ResumeState) -> bool:
    """Whether the answer to a segment request is exactly that range of the same file.

    False (the caller falls back to one stream from zero) for a 200 (ranges ignored or
    the file changed, RFC 9110 §13.1.5), a 206 for other bytes, another size or another ETag.

    Raises:
        HTTPStatusError: an error status.
    """
    if status == 200 or status in REDIRECT_STATUSES:
        return False
    if status != 206:
        raise _status_error(request.origin, status, headers)
    span = parse_content_range(headers.get("Content-Range"))
    etag = headers.get("ETag")
    if span is None or span != (request.offset, end - 1, state.size):
        return False
    return not (etag and state.strong_etag and etag != state.strong_etag)


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """What goes into every request besides the range: identity, extra headers, credentials."""

    user_agent: str = "downloader"
    headers: tuple[tuple[str, str], ...] = ()
    user: tuple[str, str] | None = None
    """--user credentials: for the job's own host only."""
    netrc: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    """Credentials per host name, from a netrc file."""


@dataclass(frozen=True, slots=True)
class Request:
    """The GET to send: URL, headers, and the part offset it continues from (0 = whole file)."""

    url: str
    headers: dict[str, str]
    offset: int = 0
    origin: str = ""
    """The job's own URL: its host is the one --user credentials are for."""
    hops: tuple[str, ...] = ()
    """URLs visited before this one in the current chain of redirects."""


@dataclass(frozen=True, slots=True)
class Validators:
    """What we know of a file we already have, for a conditional request (--sync)."""

    etag: str | None = None
    last_modified: str | None = None


def plan_request(url: str, *, have: int, state: ResumeState | None, user_agent: str = "downloader",
                 options: RequestOptions | None = None, current: Validators | None = None) -> Request:
    """The request for ``url`` when ``have`` bytes of it are in the part, described by ``state``;
    ``current`` describes the complete file already there, to be refreshed only if it changed."""
    headers = request_headers(url, origin=url, options=options or RequestOptions(user_agent))
    if have <= 0 or state is None:
        if current is not None:
            # RFC 9110 §13.1.2-3: 304 when unchanged; a server that knows ETags
            # prefers If-None-Match and ignores If-Modified-Since.
            if current.etag:
                headers["If-None-Match"] = current.etag
            if current.last_modified:
                headers["If-Modified-Since"] = current.last_modified
        return Request(url, headers, 0, url)
    headers["Range"] = f"bytes={have}-"
    if state.validator:
        # RFC 9110 §13.1.5: the server sends the range only if the file is unchanged.
        headers["If-Range"] = state.validator
    return Request(url, headers, have, url)


_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def request_headers(url: str, *, origin: str, options: RequestOptions) -> dict[str, str]:
    """The headers for ``url`` in a chain that started at ``origin``.

    Credentials and cookies never follow a redirect to another host (curl and
    requests do the same): -H Authorization/Cookie and --user are for the origin's
    host; another host gets only what a netrc file has for it.
    """
    # Identity encoding: offsets, Content-Length and digests then describe the file
    # itself, not a compressed stream of it (RFC 9110 §12.5.3).
    headers = {"Accept-Encoding": "identity", "User-Agent": options.user_agent}
    same_host = url == origin or same_origin(url, origin)
    for name, value in options.headers:
        if same_host or name.lower() not in _SECRET_HEADERS:
            headers[name] = value
    credentials = (options.user if same_host else None) or (
        options.netrc.get(urllib.parse.urlsplit(url).hostname or "") if options.netrc else None)
    if credentials and not any(name.lower() == "authorization" for name in headers):
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return headers


def with_cookie(request: Request, cookies: str) -> Request:
    """``request`` with ``cookies`` (a jar's Cookie value) added: after a -H Cookie already
    there (one header, RFC 6265 §5.4), else as the Cookie header."""
    headers = dict(request.headers)
    name = next((key for key in headers if key.lower() == "cookie"), "Cookie")
    headers[name] = f"{headers[name]}; {cookies}" if headers.get(name) else cookies
    return dataclasses.replace(request, headers=headers)


_CARRIED = ("Range", "If-Range", "If-None-Match", "If-Modified-Since")
"""Request headers that describe what is asked of the resource, not of the host: kept on a redirect."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""Statuses that send the client elsewhere with Location (RFC 9110 §15.4)."""


def follow_redirect(request: Request, headers: Mapping[str, str], *, max_redirects: int,
                    options: RequestOptions) -> Request:
    """The request that follows a redirect answer to ``request``.

    The method stays GET and the range, If-Range and the --sync conditions go along
    (it is the same resource asked for elsewhere); credentials are rebuilt for the new host.

    Raises:
        Refused: no Location, another scheme than http(s), or more than ``max_redirects``
            hops (a URL may come back in a chain: only the limit ends it).
    """
    location = headers.get("Location")
    if not location:
        raise Refused(request.origin, f"redirect from {request.url} without a Location")
    target = urllib.parse.urljoin(request.url, location.strip()).split("#", 1)[0]
    scheme = urllib.parse.urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(request.origin, f"redirect to an unsupported scheme {scheme!r}: {target}")
    # Only the hop limit ends a chain, as in curl and wget: a URL seen twice is no loop
    # when a cookie set on the way makes the second visit different (logins do that).
    if len(request.hops) >= max_redirects:
        chain = _chain(request.hops + (request.url, target))
        raise Refused(request.origin, f"more than {max_redirects} redirects: {chain}")
    fresh = request_headers(target, origin=request.origin, options=options)
    fresh.update({name: value for name, value in request.headers.items() if name in _CARRIED})
    return Request(target, fresh, request.offset, request.origin, request.hops + (request.url,))


def _chain(urls: tuple[str, ...], most: int = 8) -> str:
    """A redirect chain for a reason: every URL, or its first and last ones around "..."."""
    if len(urls) > most:
        urls = urls[:most // 2] + ("...",) + urls[-(most // 2):]
    return " -> ".join(urls)


def proxy_for(url: str, proxies: Mapping[str, str], no_proxy: str) -> str | None:
    """The proxy to reach ``url`` through, from HTTP(S)_PROXY-style settings, or None."""
    if not proxies:
        return None
    parts = urllib.parse.urlsplit(url)
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    # proxy_bypass_environment is undocumented but stable since Python 3.0; typeshed omits it.
    if no_proxy and urllib.request.proxy_bypass_environment(host, {"no": no_proxy}):  # type: ignore[attr-defined]
        return None
    return proxy


class Action(enum.Enum):
    UNCHANGED = "unchanged"
    """304 to a conditional request: the file we have is current; nothing to write."""
    REDIRECT = "redirect"
    """Ask again, at the URL the redirect gives (the part is not touched)."""
    WRITE = "write"
    """Stream the body into the part, starting at ``Decision.offset``."""
    COMPLETE = "complete"
    """The part already holds the whole file; finish it without a body."""
    RESTART = "restart"
    """The answer cannot continue the part: discard it and ask for the whole file."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a response."""

    action: Action
    offset: int = 0
    """WRITE: where the body goes in the part; 0 means truncate and start over."""
    total: int | None = None
    """The full size of the file, when known."""
    state: ResumeState | None = None
    """WRITE from 0: the state to save beside the part before the first body byte."""
    reason: str = ""
    """RESTART, or a WRITE from 0 that drops a part: why, for the log."""


def judge(request: Request, status: int, headers: Mapping[str, str], *, job: Job, state: ResumeState | None,
          max_filesize: int | None = None) -> Decision:
    """Decide what ``status`` and ``headers`` mean for the part described by ``request`` and ``state``.

    Redirects are not judged here (see :func:`follow_redirect`).

    Raises:
        HTTPStatusError: a status that carries no usable body (retryable or not).
        IntegrityError: the server announces a size other than the list's ``size=``.
        Refused: the server announces more than ``max_filesize`` bytes.
        MalformedResponse: the answer's framing is invalid (:func:`framing_fault`).
    """
    if fault := framing_fault(headers):
        raise MalformedResponse(job.url, fault)
    if status == 200:
        decision = _judge_full(request, headers, job)
    elif status == 206:
        decision = _judge_partial(request, headers, state, job.url)
    elif status == 416:
        decision = _judge_unsatisfiable(request, headers, state)
    elif status == 304 and ("If-None-Match" in request.headers or "If-Modified-Since" in request.headers):
        return Decision(Action.UNCHANGED)  # RFC 9110 §15.4.5
    else:
        raise _status_error(job.url, status, headers)
    if decision.total is not None and job.size is not None and decision.total != job.size:
        actual = str(decision.total)
        raise IntegrityError(job.url, f"server announces {actual} bytes, the list says size={job.size}", str(job.size), actual)
    if decision.total is not None and max_filesize is not None and decision.total > max_filesize:
        raise Refused(job.url, f"file of {decision.total} bytes is larger than --max-filesize {max_filesize}")
    return decision


def _judge_full(request: Request, headers: Mapping[str, str], job: Job) -> Decision:
    # RFC 9110 §13.1.5 and §14.2: a 200 to a ranged request means the file changed
    # (If-Range failed) or the server ignores ranges. Never append a full body to a part.
    total = _content_length(headers)
    reason = "server sent the whole file; restarting the part" if request.offset else ""
    return Decision(Action.WRITE, 0, total, ResumeState.from_headers(job.url, headers, total), reason)


def _judge_partial(request: Request, headers: Mapping[str, str], state: ResumeState | None, url: str) -> Decision:
    # RFC 9110 §15.3.7: a 206 must carry Content-Range; without one the body's place is unknown.
    span = parse_content_range(headers.get("Content-Range"))
    if span is None:
        return Decision(Action.RESTART, reason="206 without a usable Content-Range")
    start, end, total = span
    if start != request.offset or (total is not None and end != total - 1):
        return Decision(Action.RESTART, reason=f"asked for bytes {request.offset}- and got {start}-{end}")
    if state is None:  # a 206 to a request without Range: accept it only if it is the whole file
        if start == 0 and total is not None:
            return Decision(Action.WRITE, 0, total, ResumeState.from_headers(url, headers, total))
        return Decision(Action.RESTART, reason="unrequested partial answer")
    if state.size is not None and total != state.size:
        return Decision(Action.RESTART, reason=f"file size changed from {state.size} to {total}")
    etag = headers.get("ETag")
    if state.strong_etag and etag and etag != state.strong_etag:
        # The server ignored If-Range and sent a range of another version.
        return Decision(Action.RESTART, reason="ETag changed; the server ignored If-Range")
    modified = headers.get("Last-Modified")
    if not state.strong_etag and state.last_modified and modified and modified != state.last_modified:
        # The same with a date as the validator: another Last-Modified is another version.
        return Decision(Action.RESTART, reason="Last-Modified changed; the server ignored If-Range")
    if not state.validator and (state.size is None or total != state.size):
        return Decision(Action.RESTART, reason="no validator saved and the size does not prove the same file")
    return Decision(Action.WRITE, start, total)


def _judge_unsatisfiable(request: Request, headers: Mapping[str, str], state: ResumeState | None) -> Decision:
    # RFC 9110 §15.5.17: 416 carries "Content-Range: bytes */<size>". When the part
    # already holds that many bytes, the file is complete, if that is the same file:
    # §13.1.5: with If-Range a server whose validator does not match sends 200, so a
    # 416 answers for the validator we sent (and a different ETag on it disproves it).
    # The saved size is not needed then: it may come from a Content-Length that lied.
    # Without a validator, only the saved size can prove it.
    match = _UNSATISFIED_RANGE.match(headers.get("Content-Range", "").strip())
    total = int(match.group(1)) if match else None
    etag = headers.get("ETag")
    if state is None or (etag and state.strong_etag and etag != state.strong_etag):
        return Decision(Action.RESTART, reason=f"416 for another version of the file ({etag})")
    proven = "If-Range" in request.headers or state.size == total
    if request.offset and total == request.offset and proven:
        return Decision(Action.COMPLETE, request.offset, total)
    return Decision(Action.RESTART, reason=f"416 with the part at {request.offset} bytes of {total}")


def _status_error(url: str, status: int, headers: Mapping[str, str]) -> HTTPStatusError:
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if 300 <= status < 400:
        where = headers.get("Location", "no Location")
        return HTTPStatusError(url, f"HTTP {status} redirect not followed ({where})", status, False)
    retryable = status in RETRYABLE_STATUSES
    try:
        phrase = " " + HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return HTTPStatusError(url, f"HTTP {status}{phrase}", status, retryable, retry_after)


def framing_fault(headers: Mapping[str, str] | Message) -> str | None:
    """What makes an answer's framing invalid, in words; None when it is valid.

    ``headers`` as the engine's library gives them: a repeated field as several items
    (aiohttp, http.client) or as one value joined with commas (requests), both seen here.
    """
    lengths: list[str] = []
    chunked = False
    for name, value in headers.items():
        text = str(value)
        # RFC 9110 §5.5: CR, LF and NUL are never valid in a field value; RFC 9112 §5.2:
        # an obs-fold (a line break and white space, as http.client keeps it) is one SP.
        # The plain "in" tests first: this runs on every header of every answer.
        if ("\r" in text or "\n" in text or "\0" in text) and \
                any(c in _OBS_FOLD.sub(" ", text) for c in "\0\r\n"):
            return f"header {name} holds a NUL, CR or LF character"
        if name.lower() == "content-length":
            lengths.extend(part.strip() for part in text.split(","))
        chunked = chunked or name.lower() == "transfer-encoding"
    if not lengths:
        return None
    # RFC 9112 §6.3 (4-5): a Content-Length that is not one number is an unrecoverable
    # error. Repeated values, even equal ones, are refused too: aiohttp's parser refuses
    # them, and both engines must agree.
    if len(lengths) > 1:
        return f"invalid Content-Length: several values ({', '.join(lengths)})"
    if not _DIGITS.fullmatch(lengths[0]):
        return f"invalid Content-Length: {lengths[0]!r} is not a number"
    if int(lengths[0]) >= 2**63:  # aiohttp's parser refuses those too
        return f"invalid Content-Length: {lengths[0][:40]} is too large"
    # RFC 9112 §6.3 (3): both headers may be an attempt at response splitting; an error.
    if chunked:
        return "invalid framing: both Content-Length and Transfer-Encoding"
    return None


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Content-Length")
    if value is None or "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    value = value.strip()
    return int(value) if _DIGITS.fullmatch(value) else None


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``(first, last, total)`` from ``bytes first-last/total`` (total None for ``*``)."""
    match = _CONTENT_RANGE.match(value.strip()) if value else None
    if not match:
        return None
    first, last, total = int(match.group(1)), int(match.group(2)), match.group(3)
    size = None if total == "*" else int(total)
    if last < first or (size is not None and last >= size):
        return None
    return first, last, size


@functools.lru_cache(maxsize=256)
def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch from an HTTP-date (RFC 9110 §5.6.7), or None.

    Cached: a mirror's files share a handful of Last-Modified values, and email.utils
    takes about 10 us a parse."""
    when = _http_datetime(value)
    return None if when is None else when.timestamp()


def _http_datetime(value: str | None) -> datetime | None:
    """An HTTP-date as an aware datetime (UTC when it names no zone), or None."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(value)
    when = _http_datetime(value)
    if when is None:
        return None
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass(slots=True)
class LowSpeedMeter:
    """curl's low-speed rule: too slow when under ``limit`` bytes/s for a whole ``window``.

    A stall timeout alone never trips on a server that drips one byte every few
    seconds; this does. Feed it the bytes as they arrive with the current time.
    """

    limit: int
    window: float
    started: float
    count: int = 0

    def too_slow(self, nbytes: int, now: float) -> bool:
        """Count ``nbytes``; True when the window has passed below the limit."""
        self.count += nbytes
        elapsed = now - self.started
        if elapsed < self.window:
            return False
        slow = self.count < self.limit * elapsed
        self.started, self.count = now, 0
        return slow


def check_complete(job: Job, *, size: int, total: int | None) -> None:
    """Raise unless a finished body of ``size`` bytes is the whole file.

    Raises:
        BodyIncomplete: fewer bytes than announced (another attempt resumes).
        IntegrityError: more bytes than announced, or the list's size does not match.
    """
    if total is not None and size < total:
        raise BodyIncomplete(job.url, f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        raise IntegrityError(job.url, f"received {size} bytes, {total} announced", str(total), str(size))
    if job.size is not None and size != job.size:
        raise IntegrityError(job.url, f"size mismatch: expected {job.size} bytes, got {size}", str(job.size), str(size))


def check_digest(url: str, algorithm: str, expected: str, actual: str, header: str | None = None) -> None:
    """Raise unless the body's ``algorithm`` digest is the one expected: the list's, or the
    one the server stated in ``header``.

    Raises:
        IntegrityError: the digests differ (expected and actual as ``ALG:HEX``).
    """
    if actual != expected:
        source = f" (the server's {header})" if header else ""
        reason = f"{algorithm} mismatch{source}: expected {expected}, got {actual}"
        raise IntegrityError(url, reason, f"{algorithm}:{expected}", f"{algorithm}:{actual}")
