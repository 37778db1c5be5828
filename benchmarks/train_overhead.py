"""What gates cost in training: the CPU preset's network with and without its gates, measured side by side.

ResNet-50 at width 0.25, 64 px, 158 classes, batch 64: the gated model (9 of 16 blocks gated, as the CPU preset's
aig runs) against the same network without gates, one SGD step each (forward, cross-entropy plus, for the gated
model, the target-rate loss of eq. 2, backward, update), on random images so that only the model is measured.
Steps alternate between the two models; medians and the spread are printed, with a warning above 10 %. The overhead
is the median over steps of each gated step's time divided by the time of the step without gates taken right after
it: a busy machine slows both of a pair alike, so this ratio is steadier than a ratio of medians (both are printed).
As the `facegraph` command does, freed memory is kept for reuse unless `--allocator default`. `--profile` adds the
gated step's most expensive operators.

    python benchmarks/train_overhead.py [--steps 10] [--precision bf16] [--channels-last] [--threads N]
                                        [--allocator keep-freed|default] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from facegraph import paper
from facegraph.config import load_config
from facegraph.graphs import target_rate_loss, target_rate_schedule
from facegraph.models import GatedResNet, autocast, build_model, num_blocks

from allocator_option import add_allocator_option, apply_allocator_option
from spread import SPREAD_WARNING, spread

ARCH, WIDTH, IMAGE_SIZE, NUM_CLASSES, BATCH = "resnet50", 0.25, 64, 158, 64


def cpu_preset_gated_blocks() -> list[int]:
    """The CPU preset's gated blocks (facegraph.paper: all but the first 3, the last one and each stage's strided
    first block)."""
    return paper.gated_blocks(load_config("cpu/aig-t0.5"))


def train_step(model: GatedResNet, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               precision: str) -> None:
    with autocast(precision, "cpu"):
        logits, gate_values = model(images)
    loss = F.cross_entropy(logits.float(), labels)
    if model.num_gates:
        loss = loss + target_rate_loss(gate_values.float(), model.gated_target_rates())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (after 2 warm-up steps)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16", help="the CPU preset trains in bf16")
    parser.add_argument("--channels-last", action="store_true", help="as the CPU preset trains")
    parser.add_argument("--profile", action="store_true", help="also print the gated step's top operators")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 is steadier when shared")
    add_allocator_option(parser)
    args = parser.parse_args()
    allocator = apply_allocator_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    schedule = target_rate_schedule(num_blocks(ARCH), cpu_preset_gated_blocks(), 0.5)
    models = {"gated": build_model(ARCH, NUM_CLASSES, width=WIDTH, target_rates=schedule),
              "no gates": build_model(ARCH, NUM_CLASSES, width=WIDTH)}
    images = torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,))
    optimizers = {}
    for name, model in models.items():
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        optimizers[name] = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(args.steps + 2):
        for name, model in models.items():
            started = time.perf_counter()
            train_step(model, optimizers[name], images, labels, args.precision)
            if step >= 2:
                times[name].append(time.perf_counter() - started)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {ARCH} width {WIDTH} at {IMAGE_SIZE} px, "
          f"batch {BATCH}, {args.precision}{', channels_last' if args.channels_last else ''}, "
          f"{models['gated'].num_gates} gated blocks, {allocator} allocator")
    print("| model | ms/step (median) | images/s | spread |")
    print("|---|---:|---:|---:|")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"| {name} | {1000 * median:.1f} | {BATCH / median:.0f} | {100 * spread(measured):.0f} % |")
    paired = statistics.median(gated / plain for gated, plain in zip(times["gated"], times["no gates"]))
    of_medians = statistics.median(times["gated"]) / statistics.median(times["no gates"])
    print(f"\ngated / no gates: {paired:.3f}x step time, median of paired steps (target <= 1.10); "
          f"ratio of the medians {of_medians:.3f}x")
    if any(spread(measured) > SPREAD_WARNING for measured in times.values()):
        print(f"WARNING: spread above {100 * SPREAD_WARNING:.0f} % (a busy machine?): do not read these numbers as "
              "results")
    if args.profile:
        model = models["gated"]
        with torch.profiler.profile() as profile:
            for _ in range(3):
                train_step(model, optimizers["gated"], images, labels, args.precision)
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
