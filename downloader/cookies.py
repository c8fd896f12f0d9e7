"""The run's cookies: one jar for both engines, read from and written to Netscape cookies.txt files.

:class:`Cookies` is what the protocol side (:class:`~downloader.attempt.Attempt`) asks:
the ``Cookie`` header for a URL, and to keep the ``Set-Cookie`` values of an answer.
:class:`CookieStore` answers it with the standard library's :mod:`http.cookiejar`
(domain, path, secure and expiry rules), under a lock, since the threads engine's
workers share it. Its policy accepts cookies from IP-address hosts, as curl and wget
do, but an IP address matches only itself: a ``Domain=0.0.1`` from ``127.0.0.1``
(which :class:`http.cookiejar.DefaultCookiePolicy` would send to every ``*.0.0.1``) is refused.

Files: :func:`read_file` reads what curl (``-c``), wget (``--save-cookies``) and the
browsers' exporters write, ``#HttpOnly_`` lines included; a line that is not seven
tab-separated fields is a :class:`CookiesFileError` naming the file and the line.
:meth:`CookieStore.save` writes session cookies too (wget's ``--keep-session-cookies``).
"""

from __future__ import annotations

import contextlib
import email.message
import http.cookiejar
import io
import ipaddress
import logging
import os
import re
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from downloader.errors import CookiesFileError

if TYPE_CHECKING:
    from downloader.config import Config

__all__ = ["CookieStore", "Cookies", "CookiesFileError", "read_file", "run_cookies"]

log = logging.getLogger(__name__)

_MAGIC = "# Netscape HTTP Cookie File\n"
"""The first line http.cookiejar insists on; wget writes another ("# HTTP cookie file."), some exporters none."""
_HTTPONLY = "#HttpOnly_"
_EXPIRES = re.compile(r"-?[0-9]+")


class Cookies(Protocol):
    """What the protocol side asks of the run's cookies."""

    def header_for(self, url: str) -> str | None:
        """The ``Cookie`` header value to send with a request for ``url``, or None."""

    def store(self, url: str, set_cookies: Sequence[str]) -> None:
        """Keep what the ``Set-Cookie`` values of an answer from ``url`` allow."""


class _Policy(http.cookiejar.DefaultCookiePolicy):
    """The standard rules, but an IP address as a cookie's domain matches only itself
    (RFC 6265 §5.1.3: domain-matching an IP address is identity)."""

    def set_ok_domain(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        if _ip_involved(cookie.domain, request):
            return _same_ip(cookie.domain, request)
        return bool(super().set_ok_domain(cookie, request))

    def return_ok_domain(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        if _ip_involved(cookie.domain, request):
            return _same_ip(cookie.domain, request)
        return bool(super().return_ok_domain(cookie, request))

    def domain_return_ok(self, domain: str, request: urllib.request.Request) -> bool:
        if _ip_involved(domain, request):
            return _same_ip(domain, request)
        return bool(super().domain_return_ok(domain, request))


def _hosts(request: urllib.request.Request) -> tuple[str, str]:
    """The request's host without its port, and http.cookiejar's effective name of it
    (a dotless name gets ``.local``)."""
    # The jar's own function (undocumented, stable since Python 2; typeshed omits it), so that
    # names compare as the jar makes them: [::1] becomes [::1].local there.
    host, effective = http.cookiejar.eff_request_host(request)  # type: ignore[attr-defined]
    return host.lower(), effective.lower()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]").removesuffix(".local").strip("[]"))
    except ValueError:
        return False
    return True


def _ip_involved(domain: str, request: urllib.request.Request) -> bool:
    return _is_ip(domain.lstrip(".")) or _is_ip(_hosts(request)[0])


def _same_ip(domain: str, request: urllib.request.Request) -> bool:
    return domain.lstrip(".").lower() in _hosts(request)


class _Answer:
    """The little of a urllib response that http.cookiejar reads: its headers."""

    def __init__(self, set_cookies: Sequence[str]) -> None:
        self._headers = email.message.Message()
        for value in set_cookies:
            self._headers["Set-Cookie"] = value

    def info(self) -> email.message.Message:
        return self._headers


class CookieStore:
    """The cookies of one run (one process): a :class:`http.cookiejar.CookieJar` under a lock."""

    def __init__(self, jar: http.cookiejar.CookieJar | None = None) -> None:
        self._jar = http.cookiejar.CookieJar(_Policy())
        for cookie in jar or ():
            self._jar.set_cookie(cookie)
        self._lock = threading.Lock()
        self._empty = jar is None or not len(jar)
        """No cookie yet: most runs have none, and then a request costs no jar lookup."""

    def header_for(self, url: str) -> str | None:
        if self._empty:
            return None
        request = urllib.request.Request(url)
        with self._lock:
            self._jar.add_cookie_header(request)
        return request.unredirected_hdrs.get("Cookie")

    def store(self, url: str, set_cookies: Sequence[str]) -> None:
        if not set_cookies:
            return
        with self._lock:
            try:
                self._jar.extract_cookies(_Answer(set_cookies), urllib.request.Request(url))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - a server's bytes: an unreadable cookie is dropped, as browsers do
                log.info("%s: Set-Cookie ignored: %r", url, exc)
            self._empty = not len(self._jar)

    def cookies(self) -> list[http.cookiejar.Cookie]:
        """The cookies held now."""
        with self._lock:
            return list(self._jar)

    def save(self, path: Path) -> None:
        """Write the cookies to ``path`` as a Netscape cookies.txt, session cookies too, atomically.

        Raises:
            OSError: the file cannot be written.
        """
        out = http.cookiejar.MozillaCookieJar()
        for cookie in self.cookies():
            out.set_cookie(cookie)
        descriptor, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        os.close(descriptor)
        try:
            out.save(temporary, ignore_discard=True, ignore_expires=False)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def read_file(path: Path) -> http.cookiejar.CookieJar:
    """The unexpired cookies of a Netscape cookies.txt (session cookies included).

    Raises:
        CookiesFileError: the file cannot be read, or a line is not a cookie.
    """
    try:
        text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")  # -sig: a BOM some Windows exporters write
    except OSError as exc:
        raise CookiesFileError(f"cannot read cookies file {path}: {exc.strerror or exc}") from exc
    lines = [_normal_line(line, path, number) for number, line in enumerate(text.splitlines(), 1)]
    jar = http.cookiejar.MozillaCookieJar()
    try:
        # http.cookiejar parses the lines; they were checked above, so it meets no surprise.
        jar._really_load(io.StringIO(_MAGIC + "".join(lines)), str(path),  # type: ignore[attr-defined]
                         ignore_discard=True, ignore_expires=False)
    except http.cookiejar.LoadError as exc:
        raise CookiesFileError(f"cookies file {path}: {exc}") from exc
    return jar


def _normal_line(line: str, path: Path, number: int) -> str:
    """A line of a cookies file as http.cookiejar reads it, or a CookiesFileError naming it.

    Normalized where tools differ: expiry 0 (curl's and wget's session cookie) becomes
    empty; the include-subdomains flag and the domain's leading dot agree; a dotless
    domain (``localhost``) gets the ``.local`` http.cookiejar gives dotless hosts."""
    prefix = _HTTPONLY if line.startswith(_HTTPONLY) else ""
    body = line[len(prefix):].rstrip("\r\n")
    if not body.strip() or (not prefix and body.lstrip().startswith(("#", "$"))):
        return "\n"
    fields = body.split("\t")
    if len(fields) == 6:
        fields.append("")  # a cookie with an empty value may lose its trailing tab
    where = f"cookies file {path}, line {number}"
    if len(fields) != 7:
        raise CookiesFileError(f"{where}: expected 7 tab-separated fields, got {len(fields)}: {body[:80]!r}")
    domain, flag, cookie_path, secure, expires, name, value = fields
    if not domain or flag.upper() not in ("TRUE", "FALSE") or secure.upper() not in ("TRUE", "FALSE"):
        raise CookiesFileError(f"{where}: expected DOMAIN, TRUE/FALSE, PATH, TRUE/FALSE, ...: {body[:80]!r}")
    if expires and not _EXPIRES.fullmatch(expires):
        raise CookiesFileError(f"{where}: the expiry must be seconds since 1970, not {expires!r}")
    bare = domain.lstrip(".")
    if "." not in bare and not _is_ip(bare):
        bare += ".local"
    dotted = flag.upper() == "TRUE" or domain.startswith(".")
    domain = "." + bare if dotted and not _is_ip(bare) else bare
    flag = "TRUE" if domain.startswith(".") else "FALSE"
    expires = "" if expires in ("", "0") else expires
    return prefix + "\t".join((domain, flag, cookie_path or "/", secure.upper(), expires, name, value)) + "\n"


@contextlib.contextmanager
def run_cookies(config: Config) -> Iterator[CookieStore]:
    """The jar of a run: loaded from ``config.load_cookies``, saved to ``config.save_cookies`` at its end.

    Raises:
        CookiesFileError: the file to load is not a cookies file.
    """
    store = CookieStore(read_file(config.load_cookies) if config.load_cookies else None)
    try:
        yield store
    finally:
        if config.save_cookies is not None:
            try:
                store.save(config.save_cookies)
            except OSError as exc:  # the downloads are done; only the jar is lost, as a manifest's end
                log.error("cannot write cookies file %s: %s", config.save_cookies, exc.strerror or exc)
