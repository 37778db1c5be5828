"""Skipping inference against the same fused graph run dense, measured side by side in one run (issue 12).

Models: "paper" is the paper's ResNet-101 at 128 px, 750 classes, the middle 23 of 33 blocks gated; "cpu" is the CPU
preset's ResNet-50 at width 0.25, 64 px, 158 classes, 9 of 16 blocks gated (not the first 3, the last one, or a
stage's strided first block); "cpu-ft" the same network as table2's warm start fine-tunes it, 12 of 16 gated. For
each batch size, open rate and precision, on the same images:
- unfused dense: the model as trained (BatchNorm as separate ops, NCHW), every block computed and masked;
- fused dense: `fuse_for_inference()` run dense (laid out in `--layout`: channels_last, the default, NCHW, or auto:
  the one `facegraph.engine.layout.time_layouts` finds faster for the row, as `--layout auto` of the CLI), which
  computes every block and multiplies its branch by the gate, as convnet-aig does: the baseline the skipping speedup
  is measured against;
- fused skip: the fused graph running each block's branch on its open images only.
Every gate computes its relevance as usual, then replays a fixed random pattern with the requested open rate, so
all three take exactly the same decisions. The MAC-predicted speedup (flops.py, conv + linear + norm, on the
unfused model) is dense MACs / mean per-image MACs; the ratio is measured / predicted (1.0: skipping saves exactly
the compute it removes). The three variants run interleaved, `--repeats` times, each measurement passing over the
images as often as it takes to run `--min-seconds` (a small model's single pass lasts milliseconds, which one
scheduler hiccup can double); rows report medians, and a spread
(max - min) / median above 10 % in any variant is flagged: such rows come from a busy machine.

By default the process keeps freed tensor memory for reuse, as the `facegraph` command does
(facegraph.engine.allocator); `--allocator default` measures with the C library's own settings.

    python benchmarks/skip.py [--quick] [--model paper cpu] [--batch 64 1] [--rate 0.4 0.5 0.7]
                              [--precision fp32 bf16] [--repeats 5] [--images 64] [--min-seconds 1] [--threads N]
                              [--allocator keep-freed|default] [--layout channels_last nchw auto]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from facegraph.flops import cost_table
from facegraph import paper
from facegraph.config import load_config
from facegraph.engine.layout import AUTO, LAYOUT_CHOICES, time_layouts
from facegraph.models import LAYOUTS, GatedResNet, build_model

from allocator_option import add_allocator_option, apply_allocator_option
from spread import SPREAD_WARNING, spread

VARIANTS = ("unfused dense", "fused dense", "fused skip")


@dataclass(frozen=True)
class BenchModel:
    arch: str
    width: float
    image_size: int
    num_classes: int
    schedule: list[float]


def preset_model(preset: str, image_size: int, num_classes: int, parent: str | None = None) -> BenchModel:
    """The network a preset trains (facegraph.paper), at the image size and class count of its dataset; `parent`
    "finetune": the network table2's warm start fine-tunes (its gated blocks)."""
    # Distillation needs a run to distil from; it does not change the network.
    config = load_config(preset, ["loss.distill_weight=0"] if parent else [], parent=parent)
    return BenchModel(config.model.arch, config.model.width, image_size, num_classes, paper.target_rates(config))


MODELS = {
    "paper": preset_model("paper/aig-t0.5", 128, 750),  # ResNet-101, the middle 23 blocks gated
    "cpu": preset_model("cpu/aig-t0.5", 64, 158),  # ResNet-50 (width 0.25), 9 of 16 blocks gated, on LFW
    "cpu-ft": preset_model("cpu/aig-t0.5", 64, 158, "finetune"),  # the same, 12 of 16 gated (table2's warm start)
}


class ReplayedGates:
    """Makes every gate of a model pay for its relevance, then return the current rows of a fixed pattern."""

    def __init__(self, model: GatedResNet) -> None:
        self.pattern = torch.zeros(0, model.num_gates)
        for column, gate in enumerate(model.gates.values()):
            def forward(x: torch.Tensor, temperature: float = 1.0, sample: bool | None = None,
                        noise_scale: float = 1.0, gate=gate, column: int = column) -> torch.Tensor:
                gate.relevance(x)  # the work of a real gate
                return self.pattern[:, column]
            gate.forward = forward


@dataclass
class Row:
    model: str
    batch: int
    rate: float
    precision: str
    layout: str  # of the fused graph ("auto: nchw" when --layout auto chose it)
    seconds: dict[str, float]  # median seconds per pass over the images, per variant
    spread: dict[str, float]
    predicted: float
    latency_ms: tuple[float, float, int] | None  # fused skip p50, p95 per call and the calls timed (batch 1)

    def images_per_second(self, variant: str, images: int) -> float:
        return images / self.seconds[variant]


def measure(name: str, batch: int, rate: float, precision: str, layout: str, repeats: int, images: int,
            min_seconds: float) -> Row:
    spec = MODELS[name]
    torch.manual_seed(0)
    model = build_model(spec.arch, spec.num_classes, width=spec.width, target_rates=spec.schedule).eval()
    table = cost_table(model, spec.image_size)  # the unfused model's accounting (BatchNorm counted)
    chosen = time_layouts(model, spec.image_size, batch, precision=precision).fastest if layout == AUTO else layout
    fused = model.fuse_for_inference(LAYOUTS[chosen])
    inputs = torch.randn(images, 3, spec.image_size, spec.image_size)
    patterns = (torch.rand(images, model.num_gates) < rate).float()
    chunks = [(inputs[i:i + batch], patterns[i:i + batch]) for i in range(0, images, batch)]
    replays = {id(model): ReplayedGates(model), id(fused): ReplayedGates(fused)}
    latencies: list[float] = []

    def runner(net: GatedResNet, skip: bool, record: list[float] | None) -> Callable[[], None]:
        replay = replays[id(net)]

        def run() -> None:
            for chunk, pattern in chunks:
                replay.pattern = pattern
                started = time.perf_counter()
                net.infer(chunk, skip=skip, precision=precision)
                if record is not None:
                    record.append(time.perf_counter() - started)
        return run

    runs = {"unfused dense": runner(model, False, None), "fused dense": runner(fused, False, None),
            "fused skip": runner(fused, True, latencies if batch == 1 else None)}
    for run in runs.values():  # warm-up: oneDNN primitives created, buffers allocated
        run()
    warm = {}
    for variant, run in runs.items():
        started = time.perf_counter()
        run()
        warm[variant] = time.perf_counter() - started
    # A small model passes over the images in milliseconds, where one scheduler hiccup is a large share: every
    # measurement makes as many passes as the fastest variant, warm, needs to run for min_seconds.
    passes = max(1, math.ceil(min_seconds / min(warm.values())))
    latencies.clear()
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    order = list(runs)
    for repeat in range(repeats):
        # Rotated each repeat: no variant always runs right after another on caches it warmed.
        for variant in order[repeat % len(order):] + order[:repeat % len(order)]:
            run = runs[variant]
            started = time.perf_counter()
            for _ in range(passes):
                run()
            times[variant].append((time.perf_counter() - started) / passes)
    medians = {variant: statistics.median(t) for variant, t in times.items()}
    spreads = {variant: spread(t) for variant, t in times.items()}
    predicted = table.dense_macs() / float(table.per_image_macs(patterns).mean())
    latency = None
    if latencies:
        ordered = sorted(latencies)
        latency = (1000 * statistics.median(ordered), 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
                   len(ordered))
    label = f"{AUTO}: {chosen}" if layout == AUTO else layout
    return Row(name, batch, rate, precision, label, medians, spreads, predicted, latency)


def format_row(row: Row, images: int) -> str:
    speed = {variant: row.images_per_second(variant, images) for variant in VARIANTS}
    measured = row.seconds["fused dense"] / row.seconds["fused skip"]
    latency = f"{row.latency_ms[0]:.1f} / {row.latency_ms[1]:.1f} ({row.latency_ms[2]} calls)" if row.latency_ms else "-"
    widest = max(row.spread.values())
    flag = " !" if widest > SPREAD_WARNING else ""
    return (f"| {row.model} | {row.batch} | {row.rate:.1f} | {row.precision} | {row.layout} | "
            f"{speed['unfused dense']:.1f} | {speed['fused dense']:.1f} | {speed['fused skip']:.1f} | "
            f"{row.seconds['unfused dense'] / row.seconds['fused dense']:.2f}x | {measured:.2f}x | "
            f"{row.predicted:.2f}x | {measured / row.predicted:.2f} | {latency} | {100 * widest:.0f} %{flag} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=["paper", "cpu", "cpu-ft"])
    parser.add_argument("--batch", nargs="+", type=int, default=[64, 1])
    parser.add_argument("--rate", nargs="+", type=float, default=[0.4, 0.5, 0.7])
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per variant (medians reported)")
    parser.add_argument("--images", type=int, default=64, help="images per pass (batch 1: one call each)")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="each measurement repeats its pass over the images as often as the fastest variant "
                             "needs to run this long (counted once, after warm-up)")
    parser.add_argument("--quick", action="store_true",
                        help="the CPU preset's model, rate 0.5, fp32, batch 64 and 1, 3 repeats")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 is steadier when shared")
    add_allocator_option(parser)
    parser.add_argument("--layout", nargs="+", choices=LAYOUT_CHOICES, default=["channels_last"],
                        help="memory format of the fused graph (fuse_for_inference's default: channels_last; auto: "
                             "the faster of the two in a quick timing of the row's model, batch and precision)")
    args = parser.parse_args()
    allocator = apply_allocator_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.model, args.rate, args.precision, args.repeats = ["cpu"], [0.5], ["fp32"], 3
    if args.repeats < 3:
        parser.error(f"--repeats {args.repeats}: a spread needs at least 3 interleaved repeats")
    if any(batch > args.images for batch in args.batch):
        parser.error(f"--images {args.images} is fewer than a batch of {max(args.batch)}: the row would time smaller "
                     f"batches than it names")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {allocator} allocator, {args.images} images "
          f"per pass, >= {args.min_seconds:g} s per measurement, {args.repeats} interleaved repeats; speeds in images/s "
          "(medians)\n")
    print("| model | batch | rate | precision | fused layout | unfused dense | fused dense | fused skip "
          "| fused / unfused dense | skip speedup | MAC-predicted | ratio | skip p50 / p95 ms | spread |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    noisy = False
    for name in args.model:
        for precision in args.precision:
            for batch in args.batch:
                for rate in args.rate:
                    for layout in args.layout:
                        row = measure(name, batch, rate, precision, layout, args.repeats, args.images,
                                      args.min_seconds)
                        noisy |= max(row.spread.values()) > SPREAD_WARNING
                        print(format_row(row, args.images), flush=True)
    print("\nskip speedup = fused dense / fused skip (same graph, same gate decisions); ratio = it / MAC-predicted")
    if noisy:
        print(f"WARNING: rows marked ! have a spread above {100 * SPREAD_WARNING:.0f} % (a busy machine?): "
              "do not read them as results")


if __name__ == "__main__":
    main()
