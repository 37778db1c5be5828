"""The benchmarks' noise rule: how far repeated measurements of one thing spread, and above which spread a row is
flagged as a busy machine's and not read as a result."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

SPREAD_WARNING = 0.10


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of repeated measurements."""
    return (max(values) - min(values)) / statistics.median(values)
