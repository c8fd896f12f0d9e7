"""Which host a URL names: one answer for credentials, per-host connection slots and mirror directories.

A host is its name and its port, the scheme's default port filled in, so that
``http://h/`` and ``http://h:80/`` are one host everywhere:

* :func:`host_key` (``h:80``, scheme-independent) counts connections per host;
* :func:`same_origin` adds the scheme, for credentials: ``https://h/`` and
  ``http://h/`` are not the same place to send a password;
* :func:`host_label` is the form a person writes (``h``, ``h:8080``): the mirror
  layout's directory.

Only :mod:`urllib.parse` is imported: this module sits under everything else.
"""

from __future__ import annotations

import urllib.parse

__all__ = ["DEFAULT_PORTS", "host_key", "host_label", "same_origin"]

DEFAULT_PORTS = {"http": 80, "https": 443}
"""The port a URL of each scheme means when it names none."""


def host_key(url: str) -> str:
    """``host:port`` of ``url``: lower-cased, an IPv6 literal in brackets, the scheme's
    default port filled in; just ``host`` for a scheme without a default and no port.

    ``http://Example.org/a`` and ``http://example.org:80/b`` give ``example.org:80``;
    ``https://example.org/`` gives ``example.org:443``.

    Raises:
        ValueError: the URL's port is not a number from 0 to 65535.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""  # lower-cased, without user info or IPv6 brackets
    port = parts.port  # raises ValueError on a bad port
    if port is None:
        port = DEFAULT_PORTS.get(parts.scheme.lower())
    if ":" in host:
        host = f"[{host}]"  # RFC 3986 §3.2.2: an IPv6 literal is written in brackets
    return host if port is None else f"{host}:{port}"


def host_label(url: str) -> str:
    """:func:`host_key` without the scheme's default port: ``example.org``, ``example.org:8080``, ``[::1]``.

    Raises:
        ValueError: the URL's port is not a number from 0 to 65535.
    """
    key = host_key(url)
    default = DEFAULT_PORTS.get(urllib.parse.urlsplit(url).scheme.lower())
    return key.removesuffix(f":{default}") if default is not None else key


def same_origin(url: str, other: str) -> bool:
    """Whether both URLs reach the same server the same way: scheme, host and port
    (defaults filled in) all equal. What credentials may follow.

    Raises:
        ValueError: either URL's port is not a number from 0 to 65535.
    """
    return _scheme(url) == _scheme(other) and host_key(url) == host_key(other)


def _scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower()
