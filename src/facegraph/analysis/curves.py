"""Fig. 1: top-1 and top-5 accuracy per epoch, for every split metrics.jsonl records (train, val, test)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

METRICS = ("top1", "top5")
SPLIT_ORDER = ("train", "val", "test")
SPLIT_STYLE = {"train": ("tab:blue", "-"), "val": ("tab:orange", "-"), "test": ("tab:green", "-")}


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


def plot_accuracy_curves(series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], title: str,
                         final: dict[str, float] | None = None, final_split: str = "test") -> Figure:
    """Two panels (top-1, top-5), one line per split; `final` (fractions, from eval/<split>.json) is marked as a star
    at the last epoch: the held-out score of the checkpoint that evaluate used."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    last_epoch = max((int(x[-1]) for metrics in series.values() for x, _ in metrics.values() if len(x)), default=1)
    for axes, metric in zip(panels, METRICS):
        for split, metrics in series.items():
            if metric not in metrics:
                continue
            x, y = metrics[metric]
            colour, style = SPLIT_STYLE.get(split, (None, "--"))
            axes.plot(x, y, style, color=colour, marker="o" if len(x) < 30 else None, markersize=3, label=split)
        if final and isinstance(final.get(metric), (int, float)):
            axes.plot([last_epoch], [100.0 * final[metric]], "*", color="black", markersize=12,
                      label=f"{final_split}, evaluated checkpoint ({100.0 * final[metric]:.1f}%)")
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
