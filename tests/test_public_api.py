"""The public surface: what ``import downloader`` offers."""

from __future__ import annotations

import downloader


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and every name in it exists."""
    names = downloader.__all__

    assert sorted(names) == names
    assert [] == [name for name in names if not hasattr(downloader, name)]


def test_every_public_class_is_exported() -> None:
    """Every public class or function defined in the package modules is re-exported from the top."""
    from downloader import api, config, errors, jobs

    missing = [name for module in (api, config, errors, jobs) for name in module.__all__ if name not in downloader.__all__]

    assert [] == missing
