"""Where data lives: the real face data (the ``FACEGRAPH_DATA`` environment variable; CI sets it to ``../shared/data``)
and facegraph's own cache (downloads, image caches of read-only datasets)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

DATA_ROOT_VARIABLE = "FACEGRAPH_DATA"

logger = logging.getLogger(__name__)


def find_data_root() -> Path | None:
    """``$FACEGRAPH_DATA`` if it is set and the folder exists, else None (with a warning where it is set to a folder
    that does not exist: a mistyped path would otherwise pass for an unset one, and a download would start)."""
    value = os.environ.get(DATA_ROOT_VARIABLE)
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        logger.warning("%s=%s is not a folder; ignoring it", DATA_ROOT_VARIABLE, value)
        return None
    return root


def cache_root() -> Path:
    """facegraph's folder in the user's cache directory ($XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facegraph"
