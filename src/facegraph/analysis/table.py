"""Table II: one row per model (mean and standard deviation over seeds) from each run's eval/test.json, as Markdown
and CSV. `facegraph table2`, `facegraph demo` and the report all tabulate through here."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import paper
from facegraph.analysis.statistics import mean_std
from facegraph.config import RunConfig
from facegraph.rundir import write_text

READOUT_FEATURES = ("gender", "age")
READOUT_SCORES = ("", "_balanced", "_majority")  # column suffixes: accuracy, balanced accuracy, majority-label rate
COLUMNS = [
    ("model", "Model"), ("top1", "Top-1 test (%)"), ("gmacs_conv_only", "GMACs (conv only, the paper's \"GFLOPs\")"),
    ("gmacs", "GMACs (all counted)"), ("top5", "Top-5 test (%)"), ("open_rate", "Mean open rate"),
    ("speedup", "Measured skipping speedup"),
    ("readout_gender", "Gate read-out: gender (%)"), ("readout_age", "Gate read-out: age (%)"),
]
NOTE = ("GMACs are per test image with deterministic gates (1 MAC = 1 multiply-accumulate, GFLOPs = 2 x GMACs). "
        "Speedup: dense masked vs skipping inference, measured on this machine. Read-out: eq. 5 accuracy on the test "
        "split (IIG: training masks; AIG: per-label mean gates of the training split), with its balanced accuracy (mean "
        "recall over labels) and the majority-label rate it must beat. Over several seeds: mean ± "
        "sample standard deviation.")


@dataclass
class ModelRuns:
    """One row of the table: a model's config and the test evaluations of its runs (one per seed)."""

    name: str  # preset or run name
    config: RunConfig
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # eval/test.json of each seed
    run_dirs: list[Path] = field(default_factory=list)


def confusion_scores(confusion: list[list[int]]) -> tuple[float | None, float | None, float | None]:
    """Accuracy, balanced accuracy (mean recall over the labels present) and the majority-label rate (what always
    answering the most frequent label scores) of a read-out's confusion matrix (rows: true labels), as fractions."""
    matrix = np.asarray(confusion, dtype=np.float64).reshape(len(confusion), -1)
    totals = matrix.sum(axis=1)
    if not totals.sum():
        return None, None, None
    present = totals > 0
    recalls = np.diag(matrix)[present] / totals[present]
    return float(np.trace(matrix) / totals.sum()), float(recalls.mean()), float(totals.max() / totals.sum())


def _readout_percent(evaluation: dict[str, Any], feature: str, score: int) -> float | None:
    """score 0: accuracy, 1: balanced accuracy, 2: majority-label rate, in %."""
    confusion = evaluation.get("readout", {}).get(feature, {}).get("confusion")
    value = confusion_scores(confusion)[score] if confusion else None
    return None if value is None else 100 * value


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _open_rate(evaluation: dict[str, Any]) -> float | None:
    rates = evaluation.get("gate_rates") or []
    return sum(rates) / len(rates) if rates else None


def table_rows(models: list[ModelRuns]) -> list[dict[str, Any]]:
    """One row per model: the mean (and sample standard deviation over seeds) of each column."""
    rows = []
    for model in models:
        evaluations = model.evaluations
        columns = {
            "top1": [_percent(e.get("top1")) for e in evaluations],
            "gmacs_conv_only": [e.get("gmacs_conv_only", {}).get("mean") for e in evaluations],
            "gmacs": [e.get("gmacs", {}).get("mean") for e in evaluations],
            "top5": [_percent(e.get("top5")) for e in evaluations],
            "open_rate": [_open_rate(e) for e in evaluations],
            "speedup": [e.get("speedup", {}).get("measured") for e in evaluations],
            **{f"readout_{f}{suffix}": [_readout_percent(e, f, score) for e in evaluations]
               for f in READOUT_FEATURES for score, suffix in enumerate(READOUT_SCORES)},
        }
        row: dict[str, Any] = {"preset": model.name, "model": paper.model_label(model.config),
                               "seeds": len(evaluations)}
        for column, values in columns.items():
            row[column], row[f"{column}_std"] = mean_std(values)
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], key: str) -> str:
    if key.startswith("readout_") and row[key] is not None:
        return (f"{_number(row, key)} (balanced {_number(row, key + '_balanced')}, majority "
                f"{_number(row, key + '_majority')})")
    return _number(row, key)


def _number(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    digits = 3 if key.startswith("gmacs") or key == "open_rate" else 2
    text = f"{value:.{digits}f}"
    if row["seeds"] > 1 and row.get(f"{key}_std") is not None:
        text += f" ± {row[f'{key}_std']:.{digits}f}"
    return text + ("x" if key == "speedup" else "")


def markdown_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the table as shown (Markdown here, HTML in the report)."""
    return [title for _, title in COLUMNS], [[_cell(row, key) for key, _ in COLUMNS] for row in rows]


def write_table(rows: list[dict[str, Any]], out: Path, title: str) -> tuple[Path, Path]:
    """table2.md (for people) and table2.csv (every number, for programs) in `out`."""
    header, cells = markdown_table(rows)
    lines = [f"# Table II ({title})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    lines += ["", NOTE]
    markdown = out / "table2.md"
    write_text(markdown, "\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    table_csv = out / "table2.csv"
    write_text(table_csv, buffer.getvalue())
    return markdown, table_csv
