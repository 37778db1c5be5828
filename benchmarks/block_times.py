"""Where the fused forward spends its time: every part timed alone, with its MACs and throughput (issue 12).

The MAC-predicted skipping speedup of benchmarks/skip.py assumes every MAC costs the same time. This script measures
whether it does: the fused model (`fuse_for_inference()`) runs dense on random images, and the stem, each block
(its branch alone too, for a gated block), each gate and the head are timed alone on their real inputs. It prints per
part the time, MACs per image and GMAC/s, then the time-predicted speedup at each open rate: the parts' summed time
over that sum less the closed share of the gated branches' time. That is what skipping would gain if gathering the
open images were free and a branch on fewer images took proportionally less; time-predicted over MAC-predicted is how
far the always-run part's throughput differs from the gated branches'. A second column times each gated branch on the
open share of the batch (rate x batch images) instead of assuming proportional time: small convolutions do not run
half the images in half the time, and this is the most skipping can gain with free gathers. benchmarks/skip.py's
measured speedup over it is the efficiency of skipping itself.

The parts are timed interleaved: each of `--repeats` rounds times every part once (a part shorter than
`--min-ms` is called repeatedly within its turn), so the always-run parts and the gated branches that a ratio
compares are measured side by side, and each round gives its own speedups. Times and speedups are medians over the
rounds; a spread (max - min) / median above 10 % is flagged: such rows come from a busy machine.

    python benchmarks/block_times.py [--model paper] [--batch 64] [--rate 0.4 0.5 0.7] [--repeats 7] [--min-ms 5]
                                     [--allocator keep-freed|default]
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
from facegraph.models import build_model
from allocator_option import add_allocator_option, apply_allocator_option
from skip import MODELS
from spread import SPREAD_WARNING, spread


@dataclass(frozen=True)
class Part:
    """One timed piece of the forward. `kind`: "summed" (stem, gates, whole blocks, head: together the forward),
    "branch" (a gated block's branch on the whole batch) or "open" (that branch on the open share at `rate`)."""

    label: str
    run: Callable[[], object]
    macs: int  # per image
    kind: str
    rate: float = 0.0


def calls_lasting(run: Callable[[], object], min_ms: float) -> int:
    """How many back-to-back calls of `run` last at least `min_ms` (one call of a large part), sized on a warm call."""
    run()
    started = time.perf_counter()
    run()
    once_ms = 1000 * (time.perf_counter() - started)
    return max(1, math.ceil(min_ms / max(once_ms, 1e-3)))


def ms_per_call(run: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        run()
    return 1000 * (time.perf_counter() - started) / calls


def model_parts(fused: torch.nn.Module, table, images: torch.Tensor, open_counts: dict[float, int]) -> list[Part]:
    """Every part of the fused forward bound to its real input (computed once, dense)."""
    parts = [Part("stem", lambda: fused.stem(images), table.stem.macs(), "summed")]
    x = fused.stem(images)
    for index, block in enumerate(fused.blocks):
        cost = table.blocks[index]
        if str(index) in fused.gates:
            gate = fused.gates[str(index)]
            parts.append(Part(f"  gate {index}", lambda gate=gate, x=x: gate.relevance(x), cost.gate.macs(), "summed"))
            parts.append(Part(f"  branch {index} (gated)", lambda block=block, x=x: block.branch(x),
                              cost.branch.macs(), "branch"))
            for rate, count in open_counts.items():
                if count:  # at 0 images no branch runs; a batch prefix keeps the layout
                    parts.append(Part(f"  branch {index} on {count} images", lambda block=block, x=x[:count]:
                                      block.branch(x), cost.branch.macs(), "open", rate))
        label = f"block {index}{' (gated)' if cost.gated else ''} {tuple(x.shape[1:])}"
        parts.append(Part(label, lambda block=block, x=x: block(x), cost.branch.macs() + cost.shortcut.macs(),
                          "summed"))
        x = block(x)
    parts.append(Part("head", lambda x=x: fused.head(x), table.head.macs(), "summed"))
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="paper")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rate", nargs="+", type=float, default=[0.4, 0.5, 0.7])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (at least 3)")
    parser.add_argument("--min-ms", type=float, default=5.0, help="a part's turn repeats its call to last this long")
    add_allocator_option(parser)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats {args.repeats}: a spread needs at least 3 interleaved rounds")
    allocator = apply_allocator_option(args)
    spec = MODELS[args.model]
    torch.manual_seed(0)
    model = build_model(spec.arch, spec.num_classes, width=spec.width, target_rates=spec.schedule).eval()
    table = cost_table(model, spec.image_size)
    fused = model.fuse_for_inference()
    images = torch.randn(args.batch, 3, spec.image_size, spec.image_size).contiguous(memory_format=torch.channels_last)
    open_counts = {rate: round(rate * args.batch) for rate in args.rate}
    with torch.no_grad():
        parts = model_parts(fused, table, images, open_counts)
        whole = Part("whole forward", lambda: fused(images), table.dense_macs(), "whole")
        calls = [calls_lasting(part.run, args.min_ms) for part in (*parts, whole)]  # also the warm-up round
        rounds = [[ms_per_call(part.run, n) for part, n in zip((*parts, whole), calls)] for _ in range(args.repeats)]
    part_ms = {part.label: [times[i] for times in rounds] for i, part in enumerate(parts)}
    dense_ms = [times[-1] for times in rounds]

    def summed(times: list[float], kind: str, rate: float = 0.0) -> float:
        return sum(ms for part, ms in zip(parts, times) if part.kind == kind and part.rate == rate)

    print(f"{args.model}: fused, dense, batch {args.batch}, {torch.get_num_threads()} threads, {allocator} "
          f"allocator; medians of {args.repeats} interleaved rounds\n")
    print("| part | ms per batch | MMACs per image | GMAC/s | spread |")
    print("|---|---:|---:|---:|---:|")
    noisy = False
    for part in parts:
        if part.kind == "open":
            continue
        ms, part_spread = statistics.median(part_ms[part.label]), spread(part_ms[part.label])
        noisy |= part_spread > SPREAD_WARNING
        throughput = f"{part.macs * args.batch / ms / 1e6:.1f}" if part.macs and ms else "-"
        flag = " !" if part_spread > SPREAD_WARNING else ""
        print(f"| {part.label} | {ms:.2f} | {part.macs / 1e6:.1f} | {throughput} | {100 * part_spread:.0f} %{flag} |")
    parts_ms = [summed(times, "summed") for times in rounds]
    gated_ms = [summed(times, "branch") for times in rounds]
    always_ms = [total - gated for total, gated in zip(parts_ms, gated_ms)]
    gated_macs = float(table.gated_branch_macs().sum())
    always_macs = table.always_run_macs()
    whole_flag = " !" if spread(dense_ms) > SPREAD_WARNING else ""
    noisy |= bool(whole_flag)
    print(f"\nwhole forward {statistics.median(dense_ms):.1f} ms (spread {100 * spread(dense_ms):.0f} %{whole_flag}; its "
          f"parts timed alone: {statistics.median(parts_ms):.1f} ms)")
    print(f"gated branches: {statistics.median(gated_ms):.1f} ms, "
          f"{gated_macs * args.batch / statistics.median(gated_ms) / 1e6:.1f} GMAC/s; everything else: "
          f"{statistics.median(always_ms):.1f} ms, {always_macs * args.batch / statistics.median(always_ms) / 1e6:.1f}"
          f" GMAC/s")
    print("\n| open rate | MAC-predicted speedup | time-predicted speedup | time- / MAC-predicted "
          "| branches timed on the open images (of the batch) | it / MAC-predicted at that share | spread |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate in args.rate:
        by_macs = table.dense_macs() / table.expected_macs(rate)
        # Each round's speedups from that round's parts: a busy moment slows both sides of a ratio alike.
        by_time = [total / (total - (1 - rate) * gated) for total, gated in zip(parts_ms, gated_ms)]
        on_open = [total / (always + summed(times, "open", rate))
                   for total, always, times in zip(parts_ms, always_ms, rounds)]
        # The branches ran on a whole number of images: compare with the MACs of that share, not of the rate (at
        # batch 1 a rate of 0.4 times no branch at all, 0.7 every one).
        count = open_counts[rate]
        by_macs_timed = table.dense_macs() / table.expected_macs(count / args.batch)
        widest = max(spread(by_time), spread(on_open))
        noisy |= widest > SPREAD_WARNING
        flag = " !" if widest > SPREAD_WARNING else ""
        print(f"| {rate:.1f} | {by_macs:.2f}x | {statistics.median(by_time):.2f}x | "
              f"{statistics.median(by_time) / by_macs:.2f} | {statistics.median(on_open):.2f}x ({count} of "
              f"{args.batch}) | {statistics.median(on_open) / by_macs_timed:.2f} | {100 * widest:.0f} %{flag} |")
    if noisy:
        print(f"WARNING: rows marked ! have a spread above {100 * SPREAD_WARNING:.0f} % (a busy machine?): do not read "
              f"them as results")


if __name__ == "__main__":
    main()
