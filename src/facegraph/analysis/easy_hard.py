"""Fig. 5: easy and hard images (fewest and most active gates among an identity's correctly classified images),
and whether wrong predictions use fewer gates than correct ones (the paper's remark, tested with a rank statistic)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from facegraph.analysis.statistics import RankTest, mann_whitney_u


@dataclass(frozen=True)
class EasyHard:
    """One identity's easiest and hardest correctly classified image (indices into the image records)."""

    identity: int
    easy: int
    hard: int
    easy_gates: int
    hard_gates: int
    correct_images: int


def easy_hard_examples(identity: np.ndarray, correct: np.ndarray, active_gates: np.ndarray, max_identities: int = 4) -> list[EasyHard]:
    """Per identity, the correct image with the fewest active gates (easy) and the one with the most (hard).

    The identities shown are those whose easy and hard images differ most in active gates (ties: lower identity
    id first); an identity needs two correctly classified images. Ties within an identity go to the earlier record.
    """
    identity = np.asarray(identity)
    correct = np.asarray(correct, dtype=bool)
    active_gates = np.asarray(active_gates)
    examples = []
    for person in np.unique(identity[correct]):
        chosen = np.flatnonzero(correct & (identity == person))
        if len(chosen) < 2:
            continue
        counts = active_gates[chosen]
        easy, hard = chosen[int(np.argmin(counts))], chosen[int(np.argmax(counts))]
        examples.append(EasyHard(int(person), int(easy), int(hard), int(active_gates[easy]), int(active_gates[hard]), len(chosen)))
    examples.sort(key=lambda e: (-(e.hard_gates - e.easy_gates), e.identity))
    return examples[:max_identities]


@dataclass(frozen=True)
class ActiveGateComparison:
    """Active-gate counts of correct versus wrong predictions, and the rank test between them."""

    num_gates: int
    correct_mean: float
    wrong_mean: float
    correct_median: float
    wrong_median: float
    correct_none_open: float  # fraction of correct predictions that skipped every gated block
    wrong_none_open: float
    test: RankTest  # a = correct, b = wrong: auc > 0.5 means correct predictions use more gates


def compare_active_gates(active_gates: np.ndarray, correct: np.ndarray, num_gates: int) -> ActiveGateComparison:
    """Means, medians, all-skipped fractions and the Mann-Whitney test of correct against wrong predictions."""
    active_gates = np.asarray(active_gates, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    right, wrong = active_gates[correct], active_gates[~correct]

    def statistic(function: Callable[[np.ndarray], float], values: np.ndarray) -> float:
        return float(function(values)) if len(values) else math.nan

    return ActiveGateComparison(
        num_gates, statistic(np.mean, right), statistic(np.mean, wrong), statistic(np.median, right),
        statistic(np.median, wrong), statistic(lambda v: np.mean(v == 0), right), statistic(lambda v: np.mean(v == 0), wrong),
        mann_whitney_u(right, wrong),
    )


def plot_active_gate_distribution(active_gates: np.ndarray, correct: np.ndarray, comparison: ActiveGateComparison, title: str) -> Figure:
    """Histogram (fraction of each group) of active-gate counts for correct and for wrong predictions."""
    active_gates = np.asarray(active_gates)
    correct = np.asarray(correct, dtype=bool)
    figure = Figure(figsize=(7.5, 3.8), layout="constrained")
    axes = figure.subplots()
    edges = np.arange(-0.5, comparison.num_gates + 1.5)
    for chosen, name, colour in ((correct, "correct", "tab:green"), (~correct, "wrong", "tab:red")):
        values = active_gates[chosen]
        if len(values):
            weights = np.full(len(values), 1.0 / len(values))
            axes.hist(values, bins=edges, weights=weights, histtype="stepfilled", alpha=0.45, color=colour,
                      label=f"{name} (n={len(values)}, mean {values.mean():.2f})")
    test = comparison.test
    verdict = "" if math.isnan(test.p_two_sided) else f"; Mann-Whitney AUC {test.auc:.2f}, p = {test.p_two_sided:.2g}"
    axes.set_title(f"{title}{verdict}", fontsize="medium")
    axes.set_xlabel(f"active gates (of {comparison.num_gates} gated blocks)")
    axes.set_ylabel("fraction of predictions")
    axes.set_xlim(-0.5, comparison.num_gates + 0.5)
    axes.legend(frameon=False)
    return figure


def plot_easy_hard_grid(examples: Sequence[EasyHard], names: Sequence[str], num_gates: int,
                        load_image: Callable[[int], Image.Image | None], title: str) -> Figure:
    """Two rows (easy, hard) by one column per identity, each image captioned with its active gates.

    `load_image(record index)` returns the image, or None where it cannot be read (the cell says so).
    """
    columns = max(1, len(examples))
    # At least 7 inches wide, so that the title fits above one or two identities.
    figure = Figure(figsize=(max(7.0, 2.3 * columns + 0.8), 5.4), layout="constrained")
    grid = figure.subplots(2, columns, squeeze=False)
    for column, example in enumerate(examples):
        for row, (index, gates) in enumerate(((example.easy, example.easy_gates), (example.hard, example.hard_gates))):
            axes = grid[row, column]
            image = load_image(index)
            if image is None:
                axes.text(0.5, 0.5, "image not found", ha="center", va="center", transform=axes.transAxes)
            else:
                axes.imshow(image)
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_xlabel(f"{gates} of {num_gates} gates active")
            if row == 0:
                axes.set_title(names[column], fontsize="medium")
            if column == 0:
                axes.set_ylabel("easy (fewest gates)" if row == 0 else "hard (most gates)")
    if not examples:
        grid[0, 0].axis("off")
        grid[1, 0].axis("off")
        grid[0, 0].text(0.5, 0.5, "no identity has two correctly\nclassified test images", ha="center", va="center")
    figure.suptitle(title)
    return figure
