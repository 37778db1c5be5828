"""Figs. 2-4: per feature, the mean open rate of every gated block for each label, with I(gate; label) per block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from facegraph.analysis.information import (
    ChanceLevel, entropy_bits, gate_feature_information, shuffled_max_information_quantile,
)
from facegraph.graphs import label_prototypes


def open_rate_matrix(gates: np.ndarray, codes: np.ndarray, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean open rate (p, k) of each gate per label, and the image count (p,) per label.

    `gates` (N, k) 0/1; `codes` (N,) label index, -1 = unknown (left out, as in the paper). A label without images
    gets a row of NaN, drawn blank rather than as "never open".
    """
    gates = np.ascontiguousarray(gates, dtype=np.float64)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    rates = label_prototypes(torch.from_numpy(gates), torch.from_numpy(codes), num_labels).numpy()
    counts = np.array([int((codes == label).sum()) for label in range(num_labels)], dtype=np.int64)
    rates[counts == 0] = np.nan  # the prototypes' +inf (never picked by eq. 5) would read as "always open"
    return rates, counts


@dataclass(frozen=True)
class FeatureHeatmap:
    """Everything Figs. 2-4 show for one feature of one run."""

    feature: str
    labels: list[str]
    rates: np.ndarray  # (p, k) mean open rate per label and gate
    counts: np.ndarray  # (p,) images per label
    information: np.ndarray  # (k,) plug-in I(gate; label) in bits
    chance: ChanceLevel  # one level for all k blocks: a high quantile of the largest I under shuffled labels
    label_entropy: float  # H(label) in bits: the most any gate could tell
    people: np.ndarray | None = None  # (p,) distinct identities per label: labels are per person, so few people
    # behind a label means its row shows those people's graphs as much as the feature's


@dataclass(frozen=True)
class BlockFinding:
    """One gated block's measured link to a feature: numbered 1..k, as in the figures."""

    block: int
    information_bits: float
    chance_bits: float  # the feature's family-wise chance level, the same for every block
    most_open_label: str
    most_open_rate: float
    most_open_images: int
    least_open_label: str
    least_open_rate: float
    least_open_images: int

    @property
    def above_chance(self) -> bool:
        return self.information_bits > self.chance_bits


def feature_heatmap(feature: str, labels: Sequence[str], gates: np.ndarray, codes: np.ndarray, *,
                    identities: np.ndarray | None = None, seed: int = 0) -> FeatureHeatmap:
    """The heatmap and per-block information of one feature; unknown labels (code -1) are left out.

    `identities` (N,), if given, counts the distinct people behind each label, and the chance level shuffles the
    labels among people rather than images (labels belong to people)."""
    codes = np.asarray(codes, dtype=np.int64)
    known = codes >= 0
    people = None
    if identities is not None:
        identities = np.asarray(identities)
        people = np.array([len(np.unique(identities[codes == label])) for label in range(len(labels))])
    known_gates, known_codes = np.asarray(gates)[known], codes[known]
    rates, counts = open_rate_matrix(known_gates, known_codes, len(labels))
    information = gate_feature_information(known_gates, known_codes, len(labels))
    chance = shuffled_max_information_quantile(known_gates, known_codes, len(labels), seed=seed,
                                               identities=None if identities is None else identities[known])
    return FeatureHeatmap(feature, list(labels), rates, counts, information, chance, entropy_bits(known_codes), people)


def block_findings(heatmap: FeatureHeatmap, top: int = 3) -> list[BlockFinding]:
    """The `top` blocks that tell most about the feature, with the labels that open them most and least."""
    findings = []
    present = np.flatnonzero(heatmap.counts > 0)
    if len(present) < 2:
        return findings
    for gate in np.argsort(-heatmap.information, kind="stable")[:top]:
        column = heatmap.rates[present, gate]
        most, least = present[int(np.argmax(column))], present[int(np.argmin(column))]
        findings.append(BlockFinding(
            int(gate) + 1, float(heatmap.information[gate]), heatmap.chance.bits,
            heatmap.labels[most], float(heatmap.rates[most, gate]), int(heatmap.counts[most]),
            heatmap.labels[least], float(heatmap.rates[least, gate]), int(heatmap.counts[least]),
        ))
    return findings


def plot_feature_heatmap(heatmap: FeatureHeatmap, title: str, masks: Sequence[Sequence[int]] | None = None, *,
                         split: str) -> Figure:
    """Heatmap label x gated block (1..k) with a colour bar, and I(gate; label) per block under it; `split` names
    the images the rows count.

    `masks`, for a ConvNet-IIG feature, lists per label the gates (0-based) its mask asks to be open; they are
    outlined in red, so the figure shows how far the learnt gates follow the masks.
    """
    num_labels, num_gates = heatmap.rates.shape
    width = min(16.0, max(7.0, 3.0 + 0.38 * num_gates))  # 7 in at least: a few gates still get a readable title
    figure = Figure(figsize=(width, 2.4 + 0.42 * num_labels + 1.9), layout="constrained")
    rate_axes, information_axes = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [max(1.2, 0.42 * num_labels), 1.4]}
    )
    image = rate_axes.imshow(heatmap.rates, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                             extent=(0.5, num_gates + 0.5, num_labels - 0.5, -0.5), interpolation="nearest")
    # Above, not beside: a side colour bar would narrow this panel alone and misalign its columns with the bars.
    figure.colorbar(image, ax=rate_axes, location="top", label="mean open rate", fraction=0.08, aspect=50)
    people = heatmap.people if heatmap.people is not None else [None] * num_labels
    rate_axes.set_yticks(range(num_labels), [f"{label} (n={count}" + (f", {persons} {'person' if persons == 1 else 'people'})" if persons is not None else ")")
                                             for label, count, persons in zip(heatmap.labels, heatmap.counts, people)])
    rate_axes.set_ylabel(f"label ({split} images)")
    figure.suptitle(title)
    if masks is not None:
        for row, gates in enumerate(masks):
            for gate in gates:
                rate_axes.add_patch(Rectangle((gate + 0.5, row - 0.45), 1, 0.9, fill=False, edgecolor="red", linewidth=2))
    positions = np.arange(1, num_gates + 1)
    information_axes.bar(positions, heatmap.information, color="tab:blue")
    information_axes.axhline(heatmap.chance.bits, color="black", linewidth=1.2)
    information_axes.set_ylabel("I(gate; label), bits")
    information_axes.set_xlabel("gated block (1..k, in network order)")
    information_axes.set_xticks(positions)
    information_axes.set_xlim(0.5, num_gates + 0.5)
    information_axes.set_ylim(0.0, 1.15 * max(0.01, float(np.max(heatmap.information)), heatmap.chance.bits))
    if not np.any(heatmap.information > 0):
        information_axes.text(0.5, 0.5, "I = 0 for every block: no gate's open rate differs between labels",
                              ha="center", va="center", transform=information_axes.transAxes)
    # Said in the title rather than a legend, which would hide tall bars.
    shuffled = "among people" if heatmap.chance.by_person else "among images"
    information_axes.set_title(
        f"plug-in mutual information with {heatmap.feature} (H = {heatmap.label_entropy:.3f} bits)\n"
        f"black line: chance level = {100 * heatmap.chance.quantile:.0f}th percentile of max I\n"
        f"over blocks, {heatmap.chance.rounds} label shuffles {shuffled}", fontsize="medium")
    return figure
