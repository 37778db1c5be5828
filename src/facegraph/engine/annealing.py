"""What changes over training, as pure functions of the training position: the learning rate, linear annealing
(Gumbel temperature and noise), the target rates' warm-up and the number of epochs a step budget asks for."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, steps_per_epoch: int, epochs: int, schedule: str, warmup_epochs: float = 0.0,
              milestones: list[int] | tuple[int, ...] = (), gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based): linear warm-up, then cosine decay to
    zero, step decay by `gamma` at each milestone epoch, or constant."""
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        total = max(1.0, epochs * steps_per_epoch - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / total)))
    if schedule == "step":
        epoch = step / steps_per_epoch
        return gamma ** sum(epoch >= m for m in milestones)
    return 1.0


def linear_anneal(epoch: int, epochs: int, start: float, final: float | None) -> float:
    """A Gumbel setting (temperature, noise scale) for `epoch` (0-based): linear from `start` to `final` over
    training, or constant."""
    if final is None or epochs <= 1:
        return start
    return start + (final - start) * epoch / (epochs - 1)


def target_rates_at(epoch: int, warmup_epochs: int, final_rates: torch.Tensor) -> torch.Tensor:
    """Target rates for `epoch` (0-based): from 1 (every block open) linearly down to `final_rates` over the first
    `warmup_epochs` epochs, so the network learns its features before the gates are asked to close."""
    if epoch + 1 >= warmup_epochs:
        return final_rates
    return 1.0 - (epoch + 1) / warmup_epochs * (1.0 - final_rates)


def training_epochs(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """Epochs to train: `epochs`, or more where that would give fewer than `min_steps` optimizer steps (a dataset of a
    few hundred photos gets as many updates as a larger one, instead of collapsing to a few dozen steps)."""
    return max(epochs, math.ceil(min_steps / steps_per_epoch)) if steps_per_epoch else epochs
