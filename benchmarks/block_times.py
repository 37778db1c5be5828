"""Where the fused forward spends its time: every part timed alone, with its MACs and throughput (issue 12).

The MAC-predicted skipping speedup of benchmarks/skip.py assumes every MAC costs the same time. This script measures
whether it does: the fused model (`fuse_for_inference()`) runs dense on random images, and the stem, each block
(its branch alone too, for a gated block), each gate and the head are timed alone on their real inputs (the median
of repeated calls). It prints per part the time, MACs per image and GMAC/s, then the time-predicted speedup at each
open rate: the parts' summed time over that sum less the closed share of the gated branches' time. That is what
skipping would gain if gathering the open images were free and a branch on fewer images took proportionally less;
time-predicted over MAC-predicted is how far the always-run part's throughput differs from the gated branches'. A
second column times each gated branch on the open share of the batch (rate x batch images) instead of assuming
proportional time: small convolutions do not run half the images in half the time, and this is the most skipping
can gain with free gathers. benchmarks/skip.py's measured speedup over it is the efficiency of skipping itself.

    python benchmarks/block_times.py [--model paper] [--batch 64] [--rate 0.4 0.5 0.7] [--repeats 7]
                                     [--allocator keep-freed|default]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from facegraph.flops import cost_table
from facegraph.models import build_model
from allocator_option import add_allocator_option, apply_allocator_option
from skip import MODELS


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="paper")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rate", nargs="+", type=float, default=[0.4, 0.5, 0.7])
    parser.add_argument("--repeats", type=int, default=7)
    add_allocator_option(parser)
    args = parser.parse_args()
    allocator = apply_allocator_option(args)
    spec = MODELS[args.model]
    torch.manual_seed(0)
    model = build_model(spec.arch, spec.num_classes, width=spec.width, target_rates=spec.schedule).eval()
    table = cost_table(model, spec.image_size)
    fused = model.fuse_for_inference()
    images = torch.randn(args.batch, 3, spec.image_size, spec.image_size).contiguous(memory_format=torch.channels_last)
    rows: list[tuple[str, float, int]] = []  # part, ms per batch, MACs per image
    gated_branch_ms = 0.0
    open_counts = {rate: round(rate * args.batch) for rate in args.rate}  # at 0 images no branch runs
    branches_on_open_ms = dict.fromkeys(args.rate, 0.0)  # per rate: the gated branches on rate x batch images
    with torch.no_grad():
        rows.append(("stem", median_ms(lambda: fused.stem(images), args.repeats), table.stem.macs()))
        x = fused.stem(images)
        for index, block in enumerate(fused.blocks):
            cost = table.blocks[index]
            if str(index) in fused.gates:
                gate = fused.gates[str(index)]
                rows.append((f"  gate {index}", median_ms(lambda: gate.relevance(x), args.repeats), cost.gate.macs()))
                branch_ms = median_ms(lambda: block.branch(x), args.repeats)
                gated_branch_ms += branch_ms
                rows.append((f"  branch {index} (gated)", branch_ms, cost.branch.macs()))
                for rate, count in open_counts.items():
                    if count == 0:
                        continue
                    open_inputs = x[:count]  # a batch prefix keeps the layout
                    branches_on_open_ms[rate] += median_ms(lambda: block.branch(open_inputs), args.repeats)
            label = f"block {index}{' (gated)' if cost.gated else ''} {tuple(x.shape[1:])}"
            rows.append((label, median_ms(lambda: block(x), args.repeats), cost.branch.macs() + cost.shortcut.macs()))
            x = block(x)
        rows.append(("head", median_ms(lambda: fused.head(x), args.repeats), table.head.macs()))
        dense_ms = median_ms(lambda: fused(images), args.repeats)
    print(f"{args.model}: fused, dense, batch {args.batch}, {torch.get_num_threads()} threads, {allocator} "
          f"allocator; medians of {args.repeats} repeats\n")
    print("| part | ms per batch | MMACs per image | GMAC/s |")
    print("|---|---:|---:|---:|")
    for part, ms, macs in rows:
        throughput = f"{macs * args.batch / ms / 1e6:.1f}" if macs and ms else "-"
        print(f"| {part} | {ms:.2f} | {macs / 1e6:.1f} | {throughput} |")
    parts_ms = sum(ms for part, ms, _ in rows if not part.startswith("  branch"))
    gated_macs = float(table.gated_branch_macs().sum())
    always_macs = table.always_run_macs()
    print(f"\nwhole forward {dense_ms:.1f} ms (its parts timed alone: {parts_ms:.1f} ms)")
    print(f"gated branches: {gated_branch_ms:.1f} ms, {gated_macs * args.batch / gated_branch_ms / 1e6:.1f} GMAC/s; "
          f"everything else: {parts_ms - gated_branch_ms:.1f} ms, "
          f"{always_macs * args.batch / (parts_ms - gated_branch_ms) / 1e6:.1f} GMAC/s")
    print("\n| open rate | MAC-predicted speedup | time-predicted speedup | time- / MAC-predicted "
          "| branches timed on the open images (of the batch) | it / MAC-predicted at that share |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rate in args.rate:
        by_macs = table.dense_macs() / table.expected_macs(rate)
        by_time = parts_ms / (parts_ms - (1 - rate) * gated_branch_ms)
        on_open = parts_ms / (parts_ms - gated_branch_ms + branches_on_open_ms[rate])
        # The branches ran on a whole number of images: compare with the MACs of that share, not of the rate (at
        # batch 1 a rate of 0.4 times no branch at all, 0.7 every one).
        count = open_counts[rate]
        by_macs_timed = table.dense_macs() / table.expected_macs(count / args.batch)
        print(f"| {rate:.1f} | {by_macs:.2f}x | {by_time:.2f}x | {by_time / by_macs:.2f} | {on_open:.2f}x "
              f"({count} of {args.batch}) | {on_open / by_macs_timed:.2f} |")


if __name__ == "__main__":
    main()
