"""Digests a server states about a body, read from its answer's headers (no I/O).

* ``Repr-Digest`` (RFC 9530): a structured dictionary, ``sha-256=:BASE64:, sha-512=:BASE64:``,
  of the whole selected representation: it holds for a 206 as for a 200.
* ``Digest`` (RFC 3230): ``SHA-256=BASE64, MD5=BASE64``, of the whole instance: the same.
* ``x-goog-hash`` (Google Cloud Storage): ``crc32c=BASE64, md5=BASE64`` (often two header
  lines), of the whole object. Composite objects carry no md5; crc32c is not in hashlib.
* ``Content-Digest`` (RFC 9530) and ``Content-MD5`` (RFC 1864): of the body of this
  message only, so they say nothing of a whole file after a 206 (bodies are asked for
  and stored without content coding: on a 200 the message body is the file).

An ``ETag`` is never read as a digest: S3's multipart ETags look like MD5s and are not.
Values that cannot be decoded, or of algorithms hashlib does not have, are ignored; a
digest that decodes is checked against the body, and a mismatch fails the file.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import NamedTuple

from downloader.checksums import ALGORITHMS, checksum_problem, strongest

__all__ = ["WANT_REPR_DIGEST", "ServerDigest", "server_digest"]

WANT_REPR_DIGEST = "sha-256=10, sha-512=3"
"""What a request asks for when the list gives no checksum (RFC 9530 §4)."""

# RFC 9530's registry names, RFC 3230's (case-insensitive), GCS's.
_NAMES = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5", "sha": "sha1", "sha-1": "sha1"}
_MEMBER = re.compile(r"\s*([A-Za-z0-9_.*-]+)\s*=\s*(?::([^:]*):|([^,;\s]*))[^,]*")


class ServerDigest(NamedTuple):
    """A digest the server stated: algorithm (a hashlib name), hex digest, and the header."""

    algorithm: str
    hexdigest: str
    header: str


def server_digest(headers: Mapping[str, str], *, whole_body: bool) -> ServerDigest | None:
    """The strongest digest of the whole file the answer states, or None.

    ``whole_body``: the answer's body is the whole file (a 200), so a digest of the
    message body (``Content-MD5``) describes it too.
    """
    found: dict[str, ServerDigest] = {}
    for header, quoted in (("Repr-Digest", True), ("Digest", False), ("x-goog-hash", False)):
        value = _joined(headers, header)
        if value:
            for algorithm, hexdigest in _members(value, quoted):
                found.setdefault(algorithm, ServerDigest(algorithm, hexdigest, header))
    if whole_body:
        value = _joined(headers, "Content-Digest")
        for algorithm, hexdigest in _members(value, True) if value else ():
            found.setdefault(algorithm, ServerDigest(algorithm, hexdigest, "Content-Digest"))
        md5 = _hex_of(headers.get("Content-MD5", "").strip(), "md5")
        if md5:
            found.setdefault("md5", ServerDigest("md5", md5, "Content-MD5"))
    best = strongest(found)
    return found[best] if best else None


def _joined(headers: Mapping[str, str], name: str) -> str | None:
    """Every value of header ``name``: a multidict (aiohttp) holds repeated lines apart."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return ", ".join(getall(name, ())) or None
    return headers.get(name)


def _members(value: str, quoted: bool) -> list[tuple[str, str]]:
    """(hashlib name, hex) of each member of a digest list that decodes."""
    members = []
    for match in _MEMBER.finditer(value):
        key, sf_bytes, token = match[1].lower(), match[2], match[3]
        algorithm = _NAMES.get(key)
        if algorithm is None or (quoted and sf_bytes is None):
            continue
        hexdigest = _hex_of(sf_bytes if sf_bytes is not None else token, algorithm)
        if hexdigest:
            members.append((algorithm, hexdigest))
    return members


def _hex_of(text: str, algorithm: str) -> str | None:
    """The hex digest written in ``text`` (base64, as every header defines, or hex, as some
    servers send anyway), or None when it is neither for ``algorithm``."""
    if checksum_problem(algorithm, text) is None:
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) * 2 == ALGORITHMS[algorithm] else None
