"""Where the real face data lives: the ``FACEGRAPH_DATA`` environment variable (CI sets it to ``../shared/data``)."""

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
