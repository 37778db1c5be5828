"""Target-rate schedules: one rate t_l per residual block; t_l = 1 means "always on, no gate"."""

from __future__ import annotations

from facegraph.errors import ConfigError

PAPER_NUM_BLOCKS = 33  # ResNet-101: 3 + 4 + 23 + 3 bottleneck blocks
PAPER_ALWAYS_ON_FIRST = 7
PAPER_ALWAYS_ON_LAST = 3


def middle_gated_schedule(num_blocks: int, target_rate: float, always_on_first: int, always_on_last: int) -> list[float]:
    """Gate the middle blocks at `target_rate`; the first and last blocks always run (low- and high-level features
    are common to all images, as ConvNet-AIG argues)."""
    if always_on_first < 0 or always_on_last < 0 or always_on_first + always_on_last > num_blocks:
        raise ConfigError(
            f"cannot keep {always_on_first} first and {always_on_last} last blocks always on in {num_blocks} blocks"
        )
    if not 0.0 <= target_rate <= 1.0:
        raise ConfigError(f"target rate must lie in [0, 1], got {target_rate}")
    num_gated = num_blocks - always_on_first - always_on_last
    return [1.0] * always_on_first + [float(target_rate)] * num_gated + [1.0] * always_on_last


def paper_schedule(target_rate: float) -> list[float]:
    """The paper's ResNet-101 schedule: first 7 and last 3 blocks always on, the middle 23 gated at `target_rate`."""
    return middle_gated_schedule(PAPER_NUM_BLOCKS, target_rate, PAPER_ALWAYS_ON_FIRST, PAPER_ALWAYS_ON_LAST)
