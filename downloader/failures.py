"""The failures of a run in bounded memory: counted by kind of reason and host, the first few kept.

A run over a million URLs may fail them all; its summary must still read in one
screen. :class:`Failures` keeps, whatever the number of failures:

* a count per (kind, host), where the kind is the reason with what varies from
  one file to the next taken out (:func:`failure_kind`: URLs, paths, digests,
  byte counts) and the host is :func:`downloader.hosts.host_label` of the URL; at
  most ``max_groups`` of them, any later pair counted in one "other" group;
* the first ``keep`` failures as ``URL: reason``.

The whole list of failures is the ``--failed`` file's, written as results arrive.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from dataclasses import dataclass

from downloader.hosts import host_label
from downloader.jobs import Result

__all__ = ["OTHER", "Failures", "Group", "failure_kind"]

OTHER = "(other reasons)"
"""The kind of the group that gathers every (kind, host) pair beyond the first ``max_groups``."""

_MAX_KIND = 200  # characters of a kind kept: a key's memory is bounded, however long the reason
_SHOWN_KIND = 80  # characters of a kind in the summary (the report has them all)

# A low-level error named however a library words it: the system's text (strerror, also in
# "[Errno 111] Connection refused"), asyncio's, urllib3's and aiohttp's wrappers, in lower case.
# The first kind with one of its words found is the kind, whatever else the reason says.
_SYSTEM_ERRORS = (
    ("connection refused", ("connection refused", "econnrefused")),
    ("connection reset", ("connection reset", "econnreset")),
    ("host name not found", ("name or service not known", "nodename nor servname", "name resolution",
                             "no address associated with hostname", "getaddrinfo failed", "nameresolutionerror")),
    ("no route to host", ("no route to host",)),
    ("network unreachable", ("network is unreachable",)),
    ("TLS certificate not accepted", ("certificate verify failed", "certificate_verify_failed")),
    ("TLS error", ("[ssl:", "[ssl]", "sslerror", "tlsv1 alert", "wrong version number")),
    # The wrappers alone, no system error named (asyncio's "Connect call failed" hides the errno).
    ("connection failed", ("failed to establish a new connection", "connect call failed", "cannot connect to host")),
)

# Reasons whose words after the prefix are a library's detail, not a kind of their own.
_PREFIX_KINDS = (
    ("connect timeout", "connect timeout"),
    ("connection broken during the body", "connection broken during the body"),
    ("server disconnected", "server disconnected"),
)

_ORIGIN = re.compile(r"^(?:argument \d+|\S+:\d+): ")  # an InvalidJob's "FILE:LINE: " or "argument N: "
_GAVE_UP = re.compile(r" \(gave up after \d+ attempts\)$")
_SAME_URL = re.compile(r" \(same URL as .*\)$")  # a duplicate line fails as the first did
_REDIRECT_CHAIN = re.compile(r"(more than) \d+ (redirects): ")
_REPR = re.compile(r"(request failed|cannot fetch): (\w+)\(")  # an exception's repr: its type says it
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()]+")
_HEX = re.compile(r"\b[0-9a-fA-F]{16,}\b")
_PATH = re.compile(r"(?<![\w/])(?:\.{0,2}/|~/|[\w.-]+/)[^\s'\"(),;:]*")
_NOT_PATHS = re.compile(r"\w+/s|HTTP/[\d.]+|N/M|\d+/\d+")  # rates, protocol versions, fractions
_N_OF_M = re.compile(r"\b\d+ of \d+\b")
_NUMBER = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)*(?![\w.])")
_KEPT_NUMBER = re.compile(r"\b(?:HTTP|Errno) -?\d+")  # a status or an errno is the kind itself
_QUOTED_VALUE = re.compile(r"""(\bgot |=)(['"]).*?\2""")  # a bad value quoted from the line


@functools.lru_cache(maxsize=1024)  # most failures of a run share a few reasons
def failure_kind(reason: str) -> str:
    """The kind of failure ``reason`` tells of: the reason without what varies per file.

    ``"connection closed after 1234 of 5678 bytes"`` -> ``"connection closed after N of M bytes"``;
    ``"list.txt:7: unsupported scheme 'ftp' (only http and https)"`` -> ``"unsupported scheme
    'ftp' (only http and https)"``; a refused connection, worded by either engine's library,
    -> ``"connection refused"``. HTTP statuses and errno values stay: they are the kind.
    """
    text = " ".join(reason.split())
    if origin := _ORIGIN.match(text):
        text = text[origin.end():]
    text = _SAME_URL.sub("", _GAVE_UP.sub("", text))
    if not text.startswith("HTTP "):  # a status is a kind; other reasons may be a system's error in a library's words
        lower = text.lower()
        for kind, words in _SYSTEM_ERRORS:
            if any(word in lower for word in words):
                return kind
    for prefix, kind in _PREFIX_KINDS:
        if text.startswith(prefix):
            return kind
    if chain := _REDIRECT_CHAIN.match(text):
        return f"{chain[1]} N {chain[2]}"
    if representation := _REPR.match(text):
        return f"{representation[1]}: {representation[2]}"
    text = _URL.sub("URL", text)
    text = _QUOTED_VALUE.sub(r"\1\2...\2", text)
    text = _HEX.sub("HEX", text)
    text = _PATH.sub(_path, text)
    text = _N_OF_M.sub("N of M", text)
    text = _numbers(text)
    return text[:_MAX_KIND] or "no reason given"


def _path(match: re.Match[str]) -> str:
    return match[0] if _NOT_PATHS.fullmatch(match[0]) else "PATH"


def _numbers(text: str) -> str:
    """Every number as N, but those :data:`_KEPT_NUMBER` keeps."""
    kept = [(m.start(), m.end()) for m in _KEPT_NUMBER.finditer(text)]
    if not kept:
        return _NUMBER.sub("N", text)
    pieces, start = [], 0
    for begin, end in kept:
        pieces.append(_NUMBER.sub("N", text[start:begin]))
        pieces.append(text[begin:end])
        start = end
    pieces.append(_NUMBER.sub("N", text[start:]))
    return "".join(pieces)


def failure_host(url: str) -> str:
    """The host a failure is counted under: ``host[:port]``, or ``""`` when the URL names none."""
    try:
        return host_label(url)
    except ValueError:  # a bad port: a malformed line
        return ""


@dataclass(frozen=True, slots=True)
class Group:
    """Failures of one kind on one host."""

    kind: str
    host: str
    count: int

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "host": self.host, "count": self.count}


class Failures:
    """Failures counted by (kind, host), and the first ``keep`` of them as ``URL: reason``.

    Thread-safe; memory bounded by ``max_groups`` and ``keep``, whatever the number of failures.
    """

    def __init__(self, *, keep: int = 20, max_groups: int = 1000) -> None:
        self.keep = keep
        self.max_groups = max_groups
        self.total = 0
        self._groups: Counter[tuple[str, str]] = Counter()
        self._first: list[str] = []
        self._lock = threading.Lock()

    def add(self, result: Result) -> None:
        """Count ``result`` when it failed."""
        if result.ok:
            return
        reason = str(result.error)
        key = (failure_kind(reason), failure_host(result.url))
        with self._lock:
            self.total += 1
            if key not in self._groups and len(self._groups) >= self.max_groups:
                key = (OTHER, "")
            self._groups[key] += 1
            if len(self._first) < self.keep:
                self._first.append(f"{result.url}: {' '.join(reason.split())}")  # one line each

    def groups(self) -> list[Group]:
        """Every group, the most frequent first (then by kind and host, for a stable order);
        the "other" group last, whatever its count."""
        with self._lock:
            items = list(self._groups.items())
        items.sort(key=lambda item: (item[0][0] == OTHER, -item[1], item[0]))
        return [Group(kind, host, count) for (kind, host), count in items]

    def first(self) -> list[str]:
        """The first ``keep`` failures, as ``URL: reason``."""
        with self._lock:
            return list(self._first)

    def to_json(self) -> list[dict[str, object]]:
        """The groups for the JSON report."""
        return [group.to_json() for group in self.groups()]

    def lines(self, *, failed_file: str | None = None, report_file: str | None = None, shown: int = 20) -> list[str]:
        """The summary of the failures: a title, at most ``shown`` groups (the rest in one
        line), then the first failures and where the others are listed (``failed_file``,
        ``report_file``: the --failed and --report files, when given). Empty without failures."""
        if not self.total:
            return []
        return self._group_lines(shown, report_file) + self._first_lines(failed_file)

    def _group_lines(self, shown: int, report_file: str | None) -> list[str]:
        groups = self.groups()
        listed, rest = groups[:shown], groups[shown:]
        width = len(str(max(group.count for group in groups)))  # counts right-aligned
        kinds = min(_SHOWN_KIND, max(len(group.kind) for group in listed))  # hosts aligned after the kinds
        lines = [f"failed: {self.total} file{'s' if self.total != 1 else ''}, by reason and host:"]
        for group in listed:
            where = f"  on {group.host}" if group.host else ""
            lines.append(f"  {group.count:>{width}}  {_clip(group.kind, _SHOWN_KIND):<{kinds}}{where}".rstrip())
        if rest:
            where = f" (all in --report {report_file})" if report_file else ""
            lines.append(f"  {sum(group.count for group in rest):>{width}}  in {len(rest)} more groups{where}")
        return lines

    def _first_lines(self, failed_file: str | None) -> list[str]:
        first = self.first()
        lines = ["failed URLs:" if len(first) == self.total else f"the first {len(first)} failed URLs:"]
        lines.extend(f"  {line}" for line in first)
        if self.total > len(first):
            where = f"see --failed {failed_file}" if failed_file else "run with --failed FILE to list them all"
            lines.append(f"  ... and {self.total - len(first)} more: {where}")
        return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
