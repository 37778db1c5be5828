"""Metric arithmetic (top-k) and the per-epoch metrics log."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, torch.Tensor]:
    """Per-image 0/1 tensors: is the target among the k highest logits? (k is capped at the class count)."""
    largest = min(max(ks), logits.shape[1])
    top = logits.topk(largest, dim=1).indices
    hits = top == targets.unsqueeze(1)
    return {k: hits[:, : min(k, largest)].any(dim=1) for k in ks}


class MetricsLog:
    """metrics.jsonl: one JSON object per finished epoch; truncated to the checkpointed epochs on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def keep_epochs(self, epochs: int) -> None:
        kept = [row for row in self.read() if row["epoch"] <= epochs]
        self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))

    def append(self, row: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
