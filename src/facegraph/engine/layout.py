"""The fused inference graph's memory layout: channels_last (the default), NCHW, or whichever runs faster here.

Which layout is faster depends on the network's width, the batch size and the machine (docs/results.md, "The fused
graph's layout at batch 1"): one photo at a time through the paper's ResNet-101 ran about 1.1x faster in NCHW on a
2-core CPU, everything else measured as fast or faster channels_last. `auto` times both on the machine at hand. The
two layouts compute the same function with other rounding, so a layout chosen by timing can make two runs differ in
the last bits of their logits (the tests check that gate decisions do not change).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from facegraph.engine.trained import TrainedRun, inference_precision
from facegraph.errors import FacegraphError
from facegraph.models import LAYOUTS, GatedResNet

logger = logging.getLogger(__name__)

AUTO = "auto"
LAYOUT_CHOICES = (*LAYOUTS, AUTO)  # what --layout accepts


@dataclass(frozen=True)
class LayoutTiming:
    """What `time_layouts` measured: median seconds of one dense forward of `batch_size` images, per layout, and the
    fused graph that ran fastest (so that it need not be fused again)."""

    seconds: dict[str, float]
    batch_size: int
    repeats: int
    fastest_graph: GatedResNet | None = field(default=None, repr=False, compare=False)

    @property
    def fastest(self) -> str:
        return min(self.seconds, key=self.seconds.__getitem__)

    def describe(self) -> str:
        times = ", ".join(f"{name} {1000 * seconds:.2f} ms" for name, seconds in self.seconds.items())
        return f"{self.fastest} ({times} per batch of {self.batch_size}, medians of {self.repeats})"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_layouts(model: GatedResNet, image_size: int, batch_size: int, *, precision: str = "fp32", repeats: int = 5,
                 clock: Callable[[], float] = time.perf_counter) -> LayoutTiming:
    """Time the fused graph of `model` in every layout on `batch_size` random images, one warm-up pass each, then
    `repeats` passes alternating between the layouts (so a busy moment slows both alike), and keep the medians.
    The passes run dense: every block, so the work timed does not depend on what the gates make of noise."""
    if batch_size < 1 or repeats < 1:
        raise FacegraphError(f"timing the layouts needs batch_size >= 1 and repeats >= 1, got {batch_size} and "
                             f"{repeats}")
    device = next(model.parameters()).device
    images = torch.randn(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    fused = {name: model.fuse_for_inference(memory_format) for name, memory_format in LAYOUTS.items()}
    times: dict[str, list[float]] = {name: [] for name in fused}
    for repeat in range(repeats + 1):
        for name, graph in fused.items():
            _synchronize(device)
            start = clock()
            graph.infer(images, skip=False, precision=precision)
            _synchronize(device)
            if repeat:  # the first pass of each is the warm-up
                times[name].append(clock() - start)
    timing = LayoutTiming({name: statistics.median(values) for name, values in times.items()}, batch_size, repeats)
    return dataclasses.replace(timing, fastest_graph=fused[timing.fastest])


def use_layout(trained: TrainedRun, layout: str, *, batch_size: int,
               repeats: int = 5) -> tuple[TrainedRun, LayoutTiming | None]:
    """`trained` with its fused graph in `layout` ("channels_last", "nchw" or "auto"), and for "auto" the timing that
    chose it (at the `batch_size` the caller will run, in the run's inference precision; None otherwise)."""
    if layout not in LAYOUT_CHOICES:
        raise FacegraphError(f"unknown layout {layout!r}; layouts are {', '.join(LAYOUT_CHOICES)}")
    if layout != AUTO:
        return trained.with_layout(layout), None
    device = next(trained.model.parameters()).device
    timing = time_layouts(trained.model, int(trained.dataset["image_size"]), batch_size,
                          precision=inference_precision(trained.config, device), repeats=repeats)
    logger.info("%s: layout %s", trained.path, timing.describe())
    return trained.with_layout(timing.fastest, timing.fastest_graph), timing
