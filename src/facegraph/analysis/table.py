"""Table II: one row per run from its eval/<split>.json, and the table2.csv that `facegraph table2` leaves beside runs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from facegraph.analysis.records import RunRecords
from facegraph.errors import DataError

TABLE2_FILE = "table2.csv"


def _percent(value: Any) -> str:
    return f"{100.0 * value:.2f}" if isinstance(value, (int, float)) else "-"


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def majority_share(confusion: list[list[int]]) -> float | None:
    """The accuracy of always answering the most frequent true label: what a read-out must beat to mean anything."""
    totals = [sum(row) for row in confusion]
    return max(totals) / sum(totals) if totals and sum(totals) else None


def _readout_cell(feature: str, result: dict[str, Any]) -> str:
    baseline = majority_share(result.get("confusion") or [])
    return f"{feature} {_percent(result.get('accuracy'))}" + (f" (majority label {_percent(baseline)})" if baseline is not None else "")


def table2_row(run: RunRecords) -> dict[str, str]:
    """Column -> cell text for one run; '-' where the run lacks the value (a plain ResNet has no gates)."""
    summary = run.evaluation or {}
    gmacs = summary.get("gmacs", {})
    gflops = summary.get("gflops", {})
    rates = summary.get("gate_rates") or []
    readout = summary.get("readout", {})
    speedup = summary.get("speedup", {})
    mean_std = f"{gmacs['mean']:.3f} ± {gmacs.get('std', 0.0):.3f}" if isinstance(gmacs.get("mean"), (int, float)) else "-"
    return {
        "run": run.name,
        "model": run.label,
        f"{run.split} images": str(summary.get("images", "-")),
        "top-1 (%)": _percent(summary.get("top1")),
        "top-5 (%)": _percent(summary.get("top5")),
        "GMACs / image": mean_std,
        "dense GMACs": _number(gmacs.get("dense")),
        "GFLOPs": _number(gflops.get("mean")),
        "mean open rate": _number(sum(rates) / len(rates)) if rates else "-",
        "read-out accuracy (%)": "; ".join(_readout_cell(feature, result) for feature, result in readout.items()) or "-",
        "measured speed-up": _number(speedup.get("measured"), 2) + "x" if isinstance(speedup.get("measured"), (int, float)) else "-",
    }


def _tidy(cell: str) -> str:
    """A float written with full precision (41.666666666) shown with 3 decimals; anything else unchanged."""
    try:
        value = float(cell)
    except ValueError:
        return cell
    return cell if cell.lstrip("-").isdigit() or value != value else f"{value:.3f}"


def read_table2_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a table2.csv as written, numbers shown with 3 decimals."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except csv.Error as error:
        raise DataError(f"{path}: malformed CSV ({error})") from None
    if not rows:
        raise DataError(f"{path} is empty")
    return rows[0], [[_tidy(cell) for cell in row] for row in rows[1:]]


def table2_files(runs: list[RunRecords]) -> list[Path]:
    """table2.csv files beside the runs: in their parent folder (`facegraph table2 --out`) or, failing that, the
    folder above it (`facegraph demo` keeps runs in <out>/runs/ and the table in <out>); each once, in run order."""
    found: list[Path] = []
    for run in runs:
        parent = run.path.resolve().parent
        for candidate in (parent / TABLE2_FILE, parent.parent / TABLE2_FILE):
            if candidate.is_file():
                if candidate not in found:
                    found.append(candidate)
                break
    return found
