"""Metric arithmetic: top-k hits."""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, torch.Tensor]:
    """Per-image 0/1 tensors: is the target among the k highest logits? (k is capped at the class count)."""
    largest = min(max(ks), logits.shape[1])
    top = logits.topk(largest, dim=1).indices  # (B, largest)
    hits = top == targets.unsqueeze(1)
    return {k: hits[:, : min(k, largest)].any(dim=1) for k in ks}
