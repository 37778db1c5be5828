"""The report's verification section: what `facegraph verify` wrote in RUN/verify/<name>/pairs.csv, drawn.

Per verification: the ROC curve (plain and, when verified with --flip, flip TTA), accuracy at the fold thresholds
against the number of active gates of the pair, and how often the two images' attribute read-outs (eq. 5) agree among
false accepts, false rejects and correct decisions.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from matplotlib.figure import Figure

from facegraph.analysis.page import PageFigure, PageTable, Paragraph, Section
from facegraph.errors import DataError
from facegraph.recognition.protocol import roc_curve
from facegraph.rundir import VERIFIED_PAIRS_FILE, VERIFY_SUMMARY_FILE, RunDir, read_json

logger = logging.getLogger(__name__)

OUTCOMES = ("false accept", "false reject", "true accept", "true reject")

SaveFigure = Callable[[Figure, str, str, str], PageFigure]


@dataclass
class VerifiedPairs:
    """One verify output folder's pairs.csv as arrays (and its summary.json, when readable)."""

    name: str
    path: Path
    same: np.ndarray  # (P,) bool
    similarity: dict[str, np.ndarray]  # variant ("plain", "flip") -> (P,) cosine similarity
    correct: dict[str, np.ndarray]  # variant -> (P,) bool, at the pair's fold threshold
    active_gates: np.ndarray  # (P, 2) active gates of the first and second image
    attributes: dict[str, tuple[list[str], list[str]]]  # feature -> labels read out for first and second images
    summary: dict[str, Any] = field(default_factory=dict)


def read_verified_pairs(folder: Path) -> VerifiedPairs:
    """Read RUN/verify/<name>/pairs.csv (DataError naming the file if it is malformed)."""
    path = folder / VERIFIED_PAIRS_FILE
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not rows:
        raise DataError(f"{path}: no pairs")
    columns = rows[0].keys()
    try:
        same = np.array([row["same"] == "1" for row in rows])
        similarity = {"plain": np.array([float(row["similarity"]) for row in rows])}
        correct = {"plain": np.array([row["correct"] == "1" for row in rows])}
        if "similarity_flip" in columns:
            similarity["flip"] = np.array([float(row["similarity_flip"]) for row in rows])
            correct["flip"] = np.array([row["correct_flip"] == "1" for row in rows])
        active = np.array([[int(row["active_gates_first"]), int(row["active_gates_second"])] for row in rows])
    except (KeyError, ValueError) as error:
        raise DataError(f"{path}: not a `facegraph verify` pairs file ({error})") from None
    features = [c[: -len("_first")] for c in columns if c.endswith("_first") and f"{c[:-len('_first')]}_second" in columns
                and c[: -len("_first")] not in ("person", "gmacs", "active_gates", "gates")]
    attributes = {f: ([row[f"{f}_first"] for row in rows], [row[f"{f}_second"] for row in rows]) for f in features}
    summary: dict[str, Any] = {}
    try:
        summary = read_json(folder / VERIFY_SUMMARY_FILE)
    except DataError:
        logger.warning("%s: no readable %s", folder, VERIFY_SUMMARY_FILE)
    return VerifiedPairs(folder.name, folder, same, similarity, correct, active, attributes, summary)


def plot_roc(pairs: VerifiedPairs, title: str) -> Figure:
    """ROC curves (TAR against FAR, FAR on a log axis) of each variant."""
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    axes = figure.subplots()
    for variant, scores in pairs.similarity.items():
        curve = roc_curve(scores, pairs.same)
        positive = curve.false_accept_rates > 0
        axes.step(curve.false_accept_rates[positive], curve.true_accept_rates[positive], where="post", label=variant)
    mismatched = int((~pairs.same).sum())
    axes.set_xscale("log")
    axes.set_xlim(1.0 / max(mismatched, 1), 1.0)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("false accept rate")
    axes.set_ylabel("true accept rate")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def accuracy_by_active_gates(pairs: VerifiedPairs, variant: str = "plain") -> list[tuple[int, int, float]]:
    """(active gates of the pair (both images together), pairs, accuracy) per gate count present."""
    total = pairs.active_gates.sum(axis=1)
    return [(int(count), int((total == count).sum()), float(pairs.correct[variant][total == count].mean()))
            for count in np.unique(total)]


def plot_accuracy_by_gates(rows: list[tuple[int, int, float]], title: str) -> Figure:
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    axes = figure.subplots()
    counts = [r[0] for r in rows]
    axes.bar(counts, [100 * r[2] for r in rows], color="tab:blue", alpha=0.8)
    for count, pairs, accuracy in rows:
        axes.annotate(str(pairs), (count, 100 * accuracy), ha="center", va="bottom", fontsize=7)
    axes.set_xlabel("active gates of the pair (both images)")
    axes.set_ylabel("accuracy at the fold threshold (%)")
    axes.set_ylim(0, 105)
    axes.set_title(title, fontsize=10)
    return figure


def outcomes(pairs: VerifiedPairs, variant: str = "plain") -> np.ndarray:
    """Per pair, its index in OUTCOMES."""
    correct, same = pairs.correct[variant], pairs.same
    accepted = np.where(correct, same, ~same)
    return np.select([accepted & ~same, ~accepted & same, accepted & same], [0, 1, 2], default=3)


def attribute_agreement(pairs: VerifiedPairs, variant: str = "plain") -> dict[str, list[tuple[int, float]]]:
    """feature -> per outcome (OUTCOMES order): (pairs, fraction whose two images read out the same label)."""
    kinds = outcomes(pairs, variant)
    table = {}
    for feature, (first, second) in pairs.attributes.items():
        agree = np.array([a == b for a, b in zip(first, second)])
        table[feature] = [(int((kinds == k).sum()), float(agree[kinds == k].mean()) if (kinds == k).any() else float("nan"))
                          for k in range(len(OUTCOMES))]
    return table


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "verify"


def _summary_paragraph(pairs: VerifiedPairs) -> Paragraph:
    summary = pairs.summary
    results = summary.get("results", {})
    parts = []
    for variant, result in results.items():
        tars = "; ".join(f"TAR {100 * t['tar']:.1f}% at FAR {t['far']:g} ({t['false_accepts']} of {t['mismatched_pairs']} "
                         f"mismatched pairs accepted)" for t in result.get("tar_at_far", []))
        parts.append(f"{variant}: accuracy {100 * result['accuracy_mean']:.2f} ± {100 * result['accuracy_std']:.2f}% over "
                     f"{len(result.get('folds', []))} folds, AUC {result['auc']:.4f}, {tars}")
    text = (f"{pairs.name}: {summary.get('pairs_used', len(pairs.same))} pairs used of {summary.get('pairs_total', '?')} "
            f"({summary.get('pairs_skipped_missing', '?')} skipped for a missing image); mean "
            f"{summary.get('mean_gmacs_per_image', float('nan')):.4f} GMACs per image. " + ". ".join(parts) + ".")
    return Paragraph(text)


def verification_items(pairs: VerifiedPairs, save: SaveFigure, slug: str, label: str) -> list:
    """Page items for one verification: summary, ROC, accuracy vs active gates, attribute agreement table."""
    items: list = [_summary_paragraph(pairs)]
    overlap = pairs.summary.get("training_identity_pairs", 0)
    if overlap:
        items.append(Paragraph(f"{overlap} pairs show people this run was trained on: not a verification of unseen "
                               "people.", note=True))
    name = f"{slug}-verify-{_slug(pairs.name)}"
    if pairs.same.all() or not pairs.same.any():
        items.append(Paragraph("Only one kind of pair (matched or mismatched): no ROC curve.", note=True))
    else:
        items.append(save(plot_roc(pairs, f"{label}: ROC on {pairs.name}"), f"{name}-roc", f"ROC curve of {label}",
                          f"ROC of {label} on {pairs.name}: true accept rate against false accept rate (log axis), "
                          "cosine similarity of embeddings, all pairs pooled."))
    rows = accuracy_by_active_gates(pairs)
    if len(rows) > 1:
        items.append(save(plot_accuracy_by_gates(rows, f"{label}: accuracy by active gates"), f"{name}-gates",
                          f"verification accuracy by active gates of {label}",
                          "Verification accuracy (each pair decided at its fold's threshold) by the number of gated "
                          "blocks that ran for the two images together; numbers over the bars count pairs."))
    else:
        items.append(Paragraph(f"Every pair ran {rows[0][0]} gated blocks in all: no accuracy-by-gates figure.", note=True))
    agreement = attribute_agreement(pairs)
    if agreement:
        items.append(PageTable(
            ["attribute", *OUTCOMES],
            [[feature, *(f"{100 * frac:.0f}% of {n}" if n else "-" for n, frac in cells)]
             for feature, cells in agreement.items()],
            "Attribute agreement: the fraction of pairs whose two images read out the same label from their gates "
            "(eq. 5), by verification outcome",
        ))
    return items


def verification_section(run_dir: str | Path, save: SaveFigure, slug: str, label: str) -> list[Section]:
    """One level-3 section per RUN/verify/<name>/ with a pairs.csv; none when the run was never verified."""
    sections = []
    for folder in RunDir(run_dir).verification_dirs():
        try:
            pairs = read_verified_pairs(folder)
        except DataError as error:
            sections.append(Section(f"Verification: {folder.name}", level=3, items=[Paragraph(str(error), note=True)]))
            continue
        sections.append(Section(f"Verification: {folder.name}", level=3, items=verification_items(pairs, save, slug, label)))
    return sections
