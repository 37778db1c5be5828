"""Which residual blocks carry a gate, and the target rate t_l of each block (t_l = 1: always on, no gate)."""

from __future__ import annotations

from typing import Sequence

from facegraph.errors import ConfigError

PAPER_NUM_BLOCKS = 33  # ResNet-101: 3 + 4 + 23 + 3 bottleneck blocks
PAPER_ALWAYS_ON_FIRST = 7
PAPER_ALWAYS_ON_LAST = 3


def middle_blocks(num_blocks: int, always_on_first: int, always_on_last: int) -> list[int]:
    """The blocks between the first `always_on_first` and the last `always_on_last`: the ones that get a gate
    (low- and high-level features are common to all images, as ConvNet-AIG argues)."""
    if always_on_first < 0 or always_on_last < 0 or always_on_first + always_on_last > num_blocks:
        raise ConfigError(
            f"cannot keep {always_on_first} first and {always_on_last} last blocks always on in {num_blocks} blocks"
        )
    return list(range(always_on_first, num_blocks - always_on_last))


def target_rate_schedule(num_blocks: int, gated_blocks: Sequence[int], target_rate: float) -> list[float]:
    """One rate per block: `target_rate` for the gated blocks, 1 (always on) for the others."""
    if not 0.0 < target_rate < 1.0:
        raise ConfigError(f"a gated block's target rate must lie in (0, 1), got {target_rate}")
    gated = set(gated_blocks)
    return [float(target_rate) if block in gated else 1.0 for block in range(num_blocks)]


def middle_gated_schedule(num_blocks: int, target_rate: float, always_on_first: int, always_on_last: int) -> list[float]:
    """The middle blocks gated at `target_rate`, the first and last ones always on."""
    return target_rate_schedule(num_blocks, middle_blocks(num_blocks, always_on_first, always_on_last), target_rate)


def paper_schedule(target_rate: float) -> list[float]:
    """The paper's ResNet-101 schedule: first 7 and last 3 blocks always on, the middle 23 gated at `target_rate`."""
    return middle_gated_schedule(PAPER_NUM_BLOCKS, target_rate, PAPER_ALWAYS_ON_FIRST, PAPER_ALWAYS_ON_LAST)
