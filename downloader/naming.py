"""Where a job's file goes: its final path under the destination, never outside it.

Naming rules (each function below cites the one it applies):

* **R1 out= wins.** A list's ``out=`` is used as given under ``dest`` in both layouts,
  after validation: it must be relative, without ``..``, backslashes, control
  characters or a drive-letter component (``C:``, ``c:x``: drive-relative on Windows);
  each component is only shortened (R7), never rewritten.
* **R2 flat layout.** ``dest/NAME``: NAME is the URL's last path segment (query and
  fragment ignored), percent-decoded (invalid UTF-8 becomes U+FFFD) and made safe (R5).
  A segment with nothing left once cleaned (empty, ``.``, ``..``, ``...``, only white
  space) gives ``index-<10 hex of sha256(url)>.html``, so that different such URLs
  never share a name.
* **R3 mirror layout** (like ``wget -x``): ``dest/HOST/DIR.../NAME``.

  - HOST is the host name lower-cased, an IPv6 literal kept in brackets (``[::1]``),
    followed by ``:port`` only when the port is not the scheme's default (80 for http,
    443 for https): ``example.test:8080``, ``[::1]:8080``. User info never appears.
    HOST is made safe like any name (R5), so a host ``..`` becomes ``_`` and a one-letter
    host with a port, ``a:8080``, becomes ``a_8080`` (it would read as a drive).
  - The path is split at its literal ``/`` *before* decoding, so an encoded ``%2F``
    stays inside one name and never makes a directory. Each DIR is decoded and made
    safe; empty segments (``//``) and ``.`` (also ``%2e``) are dropped; ``..`` (also
    ``%2e%2e``) and other dot-only segments become the directory ``_``: never a move.
  - NAME is the flat name (R2), so ``/`` and ``/dir/`` end in ``index-<hash>.html``.
    The query is not part of the path: URLs that differ only by query collide (R8).
* **R4 Content-Disposition** (RFC 6266): ``filename*`` (RFC 8187 ``charset'lang'pct``;
  UTF-8, ISO-8859-1, US-ASCII and windows-1252 accepted) wins over ``filename``. An
  unusable ``filename*`` (unknown charset, bytes invalid in it, no ``'`` delimiters)
  falls back to ``filename``. In a quoted ``filename`` only ``\\"`` and ``\\\\`` are
  escapes; any other backslash is kept and then read as a separator (RFC 6266 App. D:
  many senders do not escape it). ``filename`` is never percent-decoded; one that is
  Latin-1 text holding valid UTF-8 bytes is read as UTF-8 (raw UTF-8 headers decoded as
  Latin-1 by the HTTP library). Only the part after the last ``/`` or ``\\`` is kept,
  then made safe (R5); nothing usable left gives None. RFC 2231 continuations
  (``filename*0``) are not supported (RFC 6266 §4.3 does not require them).
* **R5 safe names** (one path segment, for ext4/xfs/btrfs/APFS/NTFS):

  - control characters (Unicode Cc: C0, DEL, C1, so NUL too), ``/`` and ``\\`` → ``_``;
    lone surrogates (undecodable bytes kept by ``surrogateescape``) → U+FFFD;
  - leading white space and trailing white space and dots are stripped (Windows
    drops trailing dots and spaces, so ``a.txt.`` would alias ``a.txt``);
  - nothing left (``""``, ``.``, ``..``, ``...``) → ``_``;
  - a drive-letter start ``X:`` → ``X_`` (``C:``, ``c:evil``);
  - a Windows device name (CON, PRN, AUX, NUL, CONIN$, CONOUT$, COM0-9, LPT0-9 and
    COM/LPT with superscript 1-3), in any case, alone or before the first dot
    (``con.txt``, ``nul.tar.gz``) gets a leading ``_``;
  - longer than MAX_NAME_BYTES of UTF-8 → shortened (R7).

  Other characters Windows refuses (``<>:"|?*``) are kept: they are valid on POSIX file
  systems and the mirror layout's ``host:port`` needs the colon. On Windows such a name
  fails to open (an error, never a path outside ``dest``). Names are not Unicode-
  normalised, and names differing only in case may share a file on case-insensitive
  file systems (R8 applies when a path is taken).
* **R6 symlinks.** A path is refused when a directory on the way from ``dest`` to it
  is a symlink that is dangling, loops, or resolves outside ``realpath(dest)``, or when
  the final path, its ``.part`` or its ``.part.state`` is a symlink at all (writing would
  go through it). Symlinks that stay inside ``dest`` are followed. This is a check at
  admission, not a guarantee against a concurrent attacker (the writer should also open
  with ``O_NOFOLLOW``).
* **R7 long names.** A name over MAX_NAME_BYTES is cut on a character boundary and
  tagged ``-<8 hex of sha256(name)>``, keeping an extension of at most 16 characters.
* **R8 collisions.** When a path is taken by another URL, the alternative is
  ``stem~<8 hex of sha256(url)>.ext`` in the same directory: the last extension kept
  (``a.tar~1234abcd.gz``), a leading-dot name has no extension (``.bashrc~1234abcd``),
  cut to MAX_NAME_BYTES like R7.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import stat
import unicodedata
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Literal

from downloader.errors import InvalidJob
from downloader.hosts import host_label
from downloader.jobs import Job

__all__ = [
    "Layout",
    "MAX_NAME_BYTES",
    "PART_SUFFIX",
    "STATE_SUFFIX",
    "STATE_TMP_ROOM",
    "check_inside",
    "link_refusal",
    "collision_path",
    "name_from_disposition",
    "name_from_url",
    "output_path",
    "safe_name",
]

PART_SUFFIX = ".part"
STATE_SUFFIX = ".part.state"
STATE_TMP_ROOM = 16
"""Bytes after STATE_SUFFIX for the state's temporary name (``.<pid>.tmp``)."""
# 255 bytes is the name limit of ext4, xfs, btrfs and NTFS; the part, its state file
# and the state's temporary file add suffixes to the final name, which leaves room.
MAX_NAME_BYTES = 255 - len(STATE_SUFFIX) - STATE_TMP_ROOM

Layout = Literal["flat", "mirror"]
"""How URLs map to paths: ``flat`` (all files in dest) or ``mirror`` (dest/host/path)."""

_MAX_EXT = 16
"""Longest extension (after the last dot) kept when a name is shortened or tagged."""
_DRIVE = re.compile(r"[A-Za-z]:")
_TRAILING = re.compile(r"[\s.]+\Z")
_SEPARATORS = re.compile(r"[/\\]")
# Windows device names, reserved in every directory and with any extension
# (learn.microsoft.com, "Naming Files, Paths, and Namespaces").
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{device}{digit}" for device in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"}
)
# RFC 8187 §3.2.1: UTF-8 must be supported, ISO-8859-1 may; the rest are common in the wild.
_CHARSETS = frozenset({"utf-8", "iso8859-1", "ascii", "cp1252"})
_PARAM_END = re.compile(r"[=;]")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)
_ESCAPE = re.compile(r'\\([\\"])')


# --- paths ------------------------------------------------------------------------------

def output_path(job: Job, dest: Path, *, layout: Layout = "flat") -> Path:
    """The final path of ``job`` under ``dest``: ``out=`` when given, else from the URL.

    Args:
        job: the job; ``out=`` wins over the layout (R1).
        dest: the destination directory.
        layout: ``"flat"`` puts every file directly in ``dest`` (R2); ``"mirror"`` puts it
            under ``dest/host[:port]/path`` (R3).

    Raises:
        InvalidJob: ``out=`` is unsafe, or the URL cannot be mapped (no host, bad port);
            the reason starts with the job's origin when it has one.

    .. versionchanged:: 0.2 the ``layout`` keyword.
    """
    if job.out is not None:
        return dest.joinpath(*_out_parts(job))
    try:
        if layout == "flat":
            return dest / name_from_url(job.url)
        if layout == "mirror":
            return dest.joinpath(_host_dir(job), *_mirror_dirs(job.url), name_from_url(job.url))
    except InvalidJob:
        raise
    except ValueError as exc:  # urlsplit: a malformed IPv6 literal or netloc
        raise _invalid(job, f"URL is not valid ({exc})") from None
    raise ValueError(f"unknown layout {layout!r} (flat or mirror)")


def name_from_url(url: str) -> str:
    """The last path segment of ``url``, percent-decoded and made safe as one file name (R2).

    A URL without a usable segment (``/``, ``/dir/``, ``/..``) is named ``index-<hash>.html``,
    the hash taken over the whole URL so that different such URLs never share a name.
    """
    path = urllib.parse.urlsplit(url).path
    segment = urllib.parse.unquote(path.rsplit("/", 1)[-1], errors="replace")
    if not _clean(segment):
        return f"index-{_digest(url, 10)}.html"
    return safe_name(segment)


def collision_path(path: Path, url: str) -> Path:
    """The deterministic alternative to ``path`` when another URL already has it (R8).

    ``dir/stem.ext`` becomes ``dir/stem~<8 hex of sha256(url)>.ext``, within MAX_NAME_BYTES.

    .. versionadded:: 0.2
    """
    stem, ext = _split_ext(path.name)
    return path.parent / _tagged(stem, "~" + _digest(url, 8), ext)


def check_inside(dest: Path, path: Path, *, job: Job | None = None, names: bool = True) -> None:
    """Refuse ``path`` unless writing it stays inside ``dest`` on disk (R6).

    Only the components below ``dest`` are ``lstat``-ed; a symlink among them is
    resolved (against ``realpath(dest)``, computed only then). The walk stops at the
    first component that does not exist: what is created below it is a real directory.
    With ``names=False`` the file's own three names are left to the writer, which
    meets them anyway (an ``lstat`` of the file, the part opened with ``O_NOFOLLOW``,
    the state read with it) and refuses a link there with :func:`link_refusal`.

    Args:
        dest: the destination directory (trusted, may itself be a symlink).
        path: a path below ``dest``, as :func:`output_path` returns it.
        job: names the URL and origin in the error.

    Raises:
        InvalidJob: ``path`` is not below ``dest``, a directory on the way is a symlink
            leading outside it (or nowhere), or the file, its part or its state is a symlink.

    .. versionadded:: 0.2
    """
    relative = _relative_parts(dest, path, job)
    current, real_dest = dest, None
    for part in relative[:-1]:
        current = current / part
        mode = _lstat_mode(current)
        if mode is None:
            return  # nothing exists below: the writer creates real directories
        if stat.S_ISLNK(mode):
            real_dest = real_dest or os.path.realpath(dest)
            problem = _link_problem(current, real_dest)
            if problem:
                raise _refusal(job, path, problem)
    if not names:
        return
    for final in (path, path.with_name(path.name + PART_SUFFIX), path.with_name(path.name + STATE_SUFFIX)):
        mode = _lstat_mode(final)
        if mode is not None and stat.S_ISLNK(mode):
            raise link_refusal(path, final, job)


def link_refusal(path: Path, link: Path | str, job: Job | None = None) -> InvalidJob:
    """The error for a symlink found at ``link``, one of the names of ``path`` (the file,
    its part or its state): opening or replacing would follow it, wherever it points (R6)."""
    return _refusal(job, path, f"{link} is a symlink; not writing through it")


# --- names --------------------------------------------------------------------------------

def safe_name(name: str) -> str:
    """``name`` made safe as one path segment on any mainstream file system (R5).

    Never empty, never ``.`` or ``..``, no separator, control character or NUL, no
    trailing dot or space, no drive letter, no Windows device name, at most
    MAX_NAME_BYTES of UTF-8. Idempotent: a safe name is returned unchanged.

    .. versionadded:: 0.2
    """
    name = _clean(name)
    if not name:
        return "_"
    if _DRIVE.match(name):
        name = name[0] + "_" + name[2:]  # "C:x" is drive-relative on Windows
    if _is_reserved(name):
        name = "_" + name
    return _fit(name)


def name_from_disposition(value: str | None) -> str | None:
    """The safe file name a ``Content-Disposition`` header value gives, or None (R4).

    ``filename*`` (RFC 8187) wins over ``filename``; only the base name is kept. None
    when the header is absent, empty, has no file name or nothing usable is left.
    Never raises.

    .. versionadded:: 0.2
    """
    if not value:
        return None
    params = _disposition_params(value)
    # RFC 6266 §4.3: when both are present, filename* is preferred.
    for raw in (_ext_value(params.get("filename*")), _plain_value(params.get("filename"))):
        name = _basename(raw)
        if name is not None:
            return name
    return None


# --- helpers: out= and mirror -------------------------------------------------------------

def _invalid(job: Job, reason: str) -> InvalidJob:
    where = f"{job.origin}: " if job.origin else ""
    return InvalidJob(job.url, where + reason, job.origin)


def _out_parts(job: Job) -> list[str]:
    assert job.out is not None
    problem = _unsafe_out(job.out)
    if problem:
        raise _invalid(job, f"out={job.out!r} {problem}")
    return [_fit(p) for p in PurePosixPath(job.out).parts if p != "."]


def _unsafe_out(out: str) -> str | None:
    if any(_is_bad_char(c) for c in out):
        return "contains control characters"
    if "\\" in out:
        return "contains a backslash (use / between directories)"
    path = PurePosixPath(out)
    if path.is_absolute():
        return "is absolute; it must be relative to the destination"
    if ".." in path.parts:
        return "climbs out of the destination with '..'"
    if any(_DRIVE.match(part) for part in path.parts):
        return "names a drive ('C:'); it must be relative to the destination"
    if out.rsplit("/", 1)[-1] in ("", ".") or not path.parts:
        return "names a directory, not a file"
    return None


def _host_dir(job: Job) -> str:
    """R3: ``host``, ``host:port`` or ``[v6]:port`` (:func:`hosts.host_label`), made safe."""
    if not urllib.parse.urlsplit(job.url).hostname:
        raise _invalid(job, "URL has no host; the mirror layout needs one")
    try:
        label = host_label(job.url)
    except ValueError as exc:
        raise _invalid(job, f"URL has an invalid port ({exc})") from None
    return safe_name(label)


def _mirror_dirs(url: str) -> list[str]:
    """R3: the directories of the URL's path, each decoded and made safe; ``.`` dropped."""
    # Split before decoding: an encoded %2F is part of a name, never a separator.
    segments = urllib.parse.urlsplit(url).path.split("/")[:-1]
    decoded = (urllib.parse.unquote(s, errors="replace") for s in segments)
    return [safe_name(d) for d in decoded if d not in ("", ".")]


# --- helpers: names -------------------------------------------------------------------------

def _is_bad_char(c: str) -> bool:
    return unicodedata.category(c) == "Cc"  # C0, DEL and C1 controls


def _safe_char(c: str) -> str:
    if c in "/\\" or _is_bad_char(c):
        return "_"
    if unicodedata.category(c) == "Cs":
        return "\ufffd"  # a lone surrogate cannot be encoded as UTF-8
    return c


def _clean(name: str) -> str:
    """R5 first steps: characters replaced, leading white space, trailing white space and dots stripped."""
    if name.isascii() and name.isprintable() and "/" not in name and "\\" not in name:
        replaced = name  # the common case: no character to replace (ASCII has no controls that print)
    else:
        replaced = "".join(_safe_char(c) for c in name)
    return _TRAILING.sub("", replaced).lstrip()


def _is_reserved(name: str) -> bool:
    # Windows reads "con.txt" and "CON .txt" as the device CON.
    return name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def _split_ext(name: str) -> tuple[str, str]:
    """``name`` as (stem, extension without the dot); no extension when it is long or the name starts with it."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXT:
        return name, ""
    return stem, ext


def _tagged(stem: str, tag: str, ext: str) -> str:
    """``stem + tag + .ext``, the stem cut on a character boundary to fit MAX_NAME_BYTES."""
    suffix = tag + ("." + ext if ext else "")
    budget = MAX_NAME_BYTES - len(suffix.encode())
    return stem.encode()[:budget].decode(errors="ignore") + suffix


def _fit(name: str) -> str:
    """Shorten ``name`` to MAX_NAME_BYTES of UTF-8, keeping a short extension (R7)."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, ext = _split_ext(name)
    return _tagged(stem, "-" + _digest(name, 8), ext)


# --- helpers: Content-Disposition -------------------------------------------------------------

def _disposition_params(value: str) -> dict[str, str]:
    """Parameters as lower-cased name → unquoted value; the first of each name wins.

    Tolerant: no space after ``;``, junk after a closing quote, unquoted values with
    spaces, a missing ``;`` before the name, parameters without a value.
    """
    params: dict[str, str] = {}
    position = 0
    while position < len(value):
        match = _PARAM_END.search(value, position)
        end = match.start() if match else len(value)
        words = value[position:end].split()
        if match is None or match.group() == ";" or not words:
            position = end + 1
            continue
        text, position = _param_value(value, end + 1)
        params.setdefault(words[-1].lower(), text)
    return params


def _param_value(value: str, position: int) -> tuple[str, int]:
    """The value starting at ``position`` (quoted-string or token) and where the next parameter starts."""
    while position < len(value) and value[position] in " \t":
        position += 1
    text = None
    if value.startswith('"', position):
        quoted = _QUOTED.match(value, position)
        assert quoted is not None  # the pattern matches any string starting with '"'
        # RFC 6266 App. D: senders rarely escape "\", so only \" and \\ are escapes.
        text = _ESCAPE.sub(r"\1", quoted.group(1))
        position = quoted.end()
    end = value.find(";", position)
    end = len(value) if end < 0 else end
    return (value[position:end].strip() if text is None else text), end + 1


def _ext_value(raw: str | None) -> str | None:
    """RFC 8187 §3.2: ``charset'language'percent-encoded`` decoded, or None when unusable."""
    if raw is None:
        return None
    charset, first, rest = raw.partition("'")
    _language, second, encoded = rest.partition("'")
    if not (first and second):
        return None
    try:
        codec = codecs.lookup(charset.strip()).name
        if codec not in _CHARSETS:
            return None
        return urllib.parse.unquote_to_bytes(encoded.strip()).decode(codec)
    except (LookupError, ValueError):  # unknown charset, bad bytes, lone surrogates
        return None


def _plain_value(raw: str | None) -> str | None:
    """``filename``: raw UTF-8 bytes that the HTTP library decoded as Latin-1 are read as UTF-8."""
    if raw is None or raw.isascii():
        return raw
    try:
        return raw.encode("latin-1").decode("utf-8")
    except ValueError:
        return raw


def _basename(raw: str | None) -> str | None:
    """The safe name after the last ``/`` or ``\\`` of ``raw``, or None when nothing usable is left."""
    if raw is None:
        return None
    base = _SEPARATORS.split(raw)[-1]
    return safe_name(base) if _clean(base) else None


# --- helpers: symlinks -------------------------------------------------------------------------

def _relative_parts(dest: Path, path: Path, job: Job | None) -> tuple[str, ...]:
    try:
        parts = path.relative_to(dest).parts
    except ValueError:
        raise _refusal(job, path, f"{path} is not under the destination {dest}") from None
    if not parts or ".." in parts:
        raise _refusal(job, path, f"{path} does not name a file under the destination {dest}")
    return parts


def _lstat_mode(path: Path) -> int | None:
    """The mode of ``path`` itself, or None when it cannot be seen (missing, under a file, no access)."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None  # the writer meets the same error and reports it with the path


def _link_problem(link: Path, real_dest: str) -> str | None:
    try:
        target = os.path.realpath(link, strict=True)
    except OSError:
        return f"{link} is a symlink that leads nowhere (dangling or a loop)"
    if os.path.commonpath([real_dest, target]) != real_dest:
        return f"{link} is a symlink to {target}, outside the destination"
    return None


def _refusal(job: Job | None, path: Path, problem: str) -> InvalidJob:
    if job is None:
        return InvalidJob(str(path), problem)
    return _invalid(job, problem)
