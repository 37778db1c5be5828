"""Metric arithmetic: top-k hits, the mean open rate of a summary's gates, and the order in which training chooses
its best checkpoint."""

from __future__ import annotations

from typing import Any

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, torch.Tensor]:
    """Per-image 0/1 tensors: is the target among the k highest logits? (k is capped at the class count)."""
    largest = min(max(ks), logits.shape[1])
    top = logits.topk(largest, dim=1).indices  # (B, largest)
    hits = top == targets.unsqueeze(1)
    return {k: hits[:, : min(k, largest)].any(dim=1) for k in ks}


def mean_open_rate(summary: dict[str, Any]) -> float | None:
    """The mean over the gated blocks of a summary's per-block open rates (`gate_rates` of an evaluation or of an
    epoch's val row); None where it has none (no gates, or no such summary)."""
    rates = summary.get("gate_rates") or []
    return sum(rates) / len(rates) if rates else None


def checkpoint_rank(val_top1: float, val_open_rate: float | None, max_open_rate: float | None) -> tuple[int, float]:
    """How an epoch ranks for best.pt (the larger tuple wins).

    Without a rate budget (`max_open_rate` None) the rank is val top-1. With one, every epoch whose mean validation
    open rate is within the budget outranks every epoch above it; among those within, the higher val top-1 wins,
    among those above, the lower open rate. Val top-1 alone favours epochs that still run more blocks than the
    target asks for, at a cost the finished model is not meant to have.
    """
    if max_open_rate is None or val_open_rate is None or val_open_rate <= max_open_rate:
        return (1, val_top1)
    return (0, -val_open_rate)
