"""`facegraph evaluate`: accuracy, honest per-image cost and gate read-out of a trained run."""

from __future__ import annotations

import argparse
import json

from facegraph.cli import add_layout_option, add_subcommand

EXAMPLES = """  facegraph evaluate runs/aig
  facegraph evaluate runs/aig --split val --json
  facegraph evaluate runs/aig --data /new/place/of/lfw10      # the dataset moved since training
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "evaluate",
                            "Evaluate a run's checkpoint on one split with deterministic, skipping gates; writes "
                            "eval/<split>.json and eval/<split>-images.csv into the run.", EXAMPLES)
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `facegraph train`")
    parser.add_argument("--split", default="test", help="split of the prepared dataset to evaluate")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"], help="weights to evaluate")
    parser.add_argument("--data", help="the prepared dataset, where it is no longer at the path the run recorded")
    parser.add_argument("--no-timing", action="store_true", help="skip the dense-vs-skipping timing")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_layout_option(parser, "the batch evaluation runs (train.eval_batch_size, or the whole split when smaller)")
    parser.set_defaults(run=run)


def format_summary(summary: dict) -> str:
    lines = [
        f"{summary['split']}: {summary['images']} images, top-1 {100 * summary['top1']:.2f}%, "
        f"top-5 {100 * summary['top5']:.2f}% ({summary['layout']} layout)",
        f"cost per image (deterministic gates, conv+linear+norm): {summary['gmacs']['mean']:.4f} +- "
        f"{summary['gmacs']['std']:.4f} GMACs = {summary['gflops']['mean']:.4f} GFLOPs "
        f"(dense {summary['gmacs']['dense']:.4f} GMACs; conv only {summary['gmacs_conv_only']['mean']:.4f})",
    ]
    if "layout_seconds_per_batch" in summary:
        timed = dict(summary["layout_seconds_per_batch"])
        batch = timed.pop("batch_size")
        lines.append(f"layout timed on a batch of {batch}: "
                     + ", ".join(f"{name} {1000 * seconds:.2f} ms" for name, seconds in timed.items()))
    if summary["gate_rates"]:
        rates = " ".join(f"{rate:.2f}" for rate in summary["gate_rates"])
        lines.append(f"open rate per gated block (1..{len(summary['gate_rates'])}): {rates}")
    for feature, readout in summary.get("readout", {}).items():
        accuracy = "n/a" if readout["accuracy"] is None else f"{100 * readout['accuracy']:.1f}%"
        lines.append(f"read-out {feature} ({readout['method'].split(':')[0]}): {accuracy} on {readout['images']} images")
        lines.append("  confusion (rows true, columns read out): " + ", ".join(readout["labels"]))
        lines.extend("    " + " ".join(f"{count:6d}" for count in row) for row in readout["confusion"])
    if "speedup" in summary:
        speedup = summary["speedup"]
        lines.append(f"skipping vs dense inference on {speedup['images']} images: measured {speedup['measured']:.2f}x, "
                     f"MACs predict {speedup['predicted']:.2f}x")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from facegraph.engine.evaluate import evaluate_run

    summary = evaluate_run(args.run_dir, args.split, data_root=args.data, checkpoint=args.checkpoint,
                           timing=not args.no_timing, layout=args.layout)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
