"""Where data lives: the real face data (the ``FACEGRAPH_DATA`` environment variable; CI sets it to ``../shared/data``)
and facegraph's own cache (downloads, image caches of read-only datasets)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_VARIABLE = "FACEGRAPH_DATA"


def find_data_root() -> Path | None:
    """``$FACEGRAPH_DATA`` if it is set and the folder exists, else None."""
    value = os.environ.get(DATA_ROOT_VARIABLE)
    if not value:
        return None
    root = Path(value).expanduser()
    return root if root.is_dir() else None


def cache_root() -> Path:
    """facegraph's folder in the user's cache directory ($XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facegraph"
