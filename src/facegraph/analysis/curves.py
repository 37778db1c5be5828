"""Fig. 1: top-1 and top-5 accuracy per epoch, for every split metrics.jsonl records (train writes train and val;
the test split is evaluated once, after training, and drawn as a star from eval/<split>.json).

The train line is what training logged: the running accuracy over the epoch's batches in training mode (augmented
images, sampled gates, batch statistics), not an evaluation of the weights at the epoch's end."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from facegraph.rundir import BEST, LAST

METRICS = ("top1", "top5")
SPLIT_ORDER = ("train", "val", "test")
SPLIT_STYLE = {"train": ("tab:blue", "-"), "val": ("tab:orange", "-"), "test": ("tab:green", "-")}
SPLIT_LEGEND = {"train": "train (running, training mode)"}


def accuracy_series(epochs: Sequence[dict[str, Any]]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """split -> metric -> (epoch numbers, values in %) from metrics.jsonl objects; epochs lacking a value are skipped."""
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for epoch in epochs:
        for split, values in epoch.items():
            if not isinstance(values, dict):
                continue
            for metric in METRICS:
                if isinstance(values.get(metric), (int, float)):
                    numbers, percents = series.setdefault(split, {}).setdefault(metric, ([], []))
                    numbers.append(int(epoch["epoch"]))
                    percents.append(100.0 * float(values[metric]))
    ordered = sorted(series, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    return {split: {metric: (np.array(x), np.array(y)) for metric, (x, y) in series[split].items()} for split in ordered}


def evaluated_epoch(checkpoint: str, done: dict[str, Any] | None, logged_epochs: Sequence[int]) -> int | None:
    """The epoch whose weights `evaluate` scored: for best.pt the best-val epoch that done.json names, for last.pt the
    last logged epoch; None when unknown (best.pt of a run that has not finished: no done.json yet)."""
    if checkpoint == LAST:
        return max(logged_epochs, default=None)
    best = (done or {}).get("best_epoch")
    return best if isinstance(best, int) and best > 0 else None


def plot_accuracy_curves(series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], title: str,
                         final: dict[str, float] | None = None, final_split: str = "test", *,
                         final_epoch: int | None = None, final_checkpoint: str = BEST) -> Figure:
    """Two panels (top-1, top-5), one line per split; `final` (fractions, from eval/<split>.json), the held-out score
    of the checkpoint evaluate used, is a star at `final_epoch`, the epoch of those weights (evaluated_epoch), or a
    dotted level across the panel when that epoch is unknown."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    for axes, metric in zip(panels, METRICS):
        for split, metrics in series.items():
            if metric not in metrics:
                continue
            x, y = metrics[metric]
            colour, style = SPLIT_STYLE.get(split, (None, "--"))
            axes.plot(x, y, style, color=colour, marker="o" if len(x) < 30 else None, markersize=3,
                      label=SPLIT_LEGEND.get(split, split))
        if final and isinstance(final.get(metric), (int, float)):
            percent = 100.0 * final[metric]
            weights = f"{final_split} of {final_checkpoint}.pt"
            if final_epoch is None:
                axes.axhline(percent, color="black", linestyle=":", label=f"{weights}, epoch unknown: {percent:.1f}%")
            else:
                which = " (best val)" if final_checkpoint == BEST else ""
                axes.plot([final_epoch], [percent], "*", color="black", markersize=12,
                          label=f"{weights}, epoch {final_epoch}{which}: {percent:.1f}%")
        axes.set_title(f"top-{metric[-1]} accuracy")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylim(0, 100)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small", frameon=False, loc="lower right")
    panels[0].set_ylabel("accuracy (%)")
    figure.suptitle(title)
    return figure


def plot_runs_comparison(named_series: Sequence[tuple[str, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]],
                         split: str = "val", metric: str = "top1") -> Figure:
    """One line per run: `split` `metric` per epoch, to compare runs at a glance."""
    figure = Figure(figsize=(8, 4), layout="constrained")
    axes = figure.subplots()
    for label, series in named_series:
        if metric in series.get(split, {}):
            x, y = series[split][metric]
            axes.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=label)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(f"{split} top-{metric[-1]} accuracy (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", frameon=False)
    axes.set_title(f"{split} top-{metric[-1]} per epoch, all runs")
    return figure
