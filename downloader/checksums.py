"""Checksums: which algorithms, how one is written, and the hashers that compute them.

A checksum is carried as one string, ``ALG:HEX`` (``"md5:d41d8cd9..."``), algorithm and
digest in lower case: the form a list line's ``checksum=`` takes, the one a
:class:`~downloader.jobs.Job`, a :class:`~downloader.jobs.Result`, the manifest and the
reports hold. Every algorithm is :mod:`hashlib`'s.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Protocol

__all__ = ["ALGORITHMS", "BY_HEX_LENGTH", "HEX", "Hasher", "Hashers", "checksum", "checksum_problem", "parse", "strongest"]

ALGORITHMS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "blake2b": 128}
"""The algorithms a list may name, with the length of their hex digest."""

BY_HEX_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
"""The algorithm of a bare hex digest, told by its length (blake2b, 128 digits too, must be named)."""
HEX = re.compile(r"[0-9a-fA-F]+")
"""Hex digits, either case."""

_STRENGTH = ("md5", "sha1", "sha256", "blake2b", "sha512")
"""Weakest first: of several digests a server states, the last one here is checked."""


class Hasher(Protocol):
    """What the file side needs of a hasher: the bytes in (a resumed prefix, a split file)."""

    def update(self, data: bytes | memoryview, /) -> None: ...


def checksum(algorithm: str, hexdigest: str) -> str:
    """The ``ALG:HEX`` form of a digest, in lower case."""
    return f"{algorithm.lower()}:{hexdigest.lower()}"


def checksum_problem(algorithm: str, hexdigest: str) -> str | None:
    """Why ``hexdigest`` cannot be an ``algorithm`` digest, or None when it can."""
    length = ALGORITHMS.get(algorithm.lower())
    if length is None:
        return f"unknown checksum algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})"
    if len(hexdigest) != length or not HEX.fullmatch(hexdigest):
        return f"{algorithm.lower()} must be {length} hex digits, got {hexdigest!r}"
    return None


def parse(text: str) -> str:
    """The checksum written ``ALG:HEX`` in ``text``, in its canonical form.

    Raises:
        ValueError: naming what is wrong with it.
    """
    algorithm, sep, hexdigest = text.partition(":")
    if not sep:
        raise ValueError(f"checksum must be ALG:HEX (ALG one of {', '.join(ALGORITHMS)}), got {text!r}")
    problem = checksum_problem(algorithm, hexdigest)
    if problem:
        raise ValueError(problem)
    return checksum(algorithm, hexdigest)


def strongest(algorithms: Iterable[str]) -> str | None:
    """The strongest of ``algorithms`` (names of :data:`ALGORITHMS`), None when there is none."""
    found = [name for name in algorithms if name in ALGORITHMS]
    return max(found, key=_STRENGTH.index) if found else None


class Hashers:
    """One hasher per algorithm, fed the same bytes: a list's checksum and a server's digest
    in another algorithm are computed in one pass."""

    __slots__ = ("_hashers",)

    def __init__(self, algorithms: Iterable[str]) -> None:
        self._hashers = {name: hashlib.new(name) for name in algorithms}

    def update(self, data: bytes | memoryview, /) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)

    def digest_of(self, algorithm: str) -> str:
        """The hex digest computed with ``algorithm``."""
        return self._hashers[algorithm].hexdigest()
