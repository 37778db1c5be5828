"""`facegraph flops`: the per-image cost of an architecture, dense or at a target rate."""

from __future__ import annotations

import argparse
import json

from facegraph.flops import CONV_ONLY, KINDS, cost_table
from facegraph.graphs import middle_gated_schedule
from facegraph.graphs.schedule import PAPER_ALWAYS_ON_FIRST, PAPER_ALWAYS_ON_LAST
from facegraph.models import ARCHS, build_model, num_blocks

COUNTED = "Conv2d (conv), Linear (linear), BatchNorm (norm: 1 MAC per element); not counted: ReLU, additions, pooling"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("flops", help="per-image MACs/FLOPs of an architecture (dense, or at a target rate)")
    parser.add_argument("--arch", default="resnet101", choices=sorted(ARCHS))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=750)
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    parser.add_argument("--target", type=float, help="expected cost when each gated block runs with this probability")
    parser.add_argument("--always-on-first", type=int, default=PAPER_ALWAYS_ON_FIRST,
                        help="blocks at the start that are never gated (paper: 7)")
    parser.add_argument("--always-on-last", type=int, default=PAPER_ALWAYS_ON_LAST,
                        help="blocks at the end that are never gated (paper: 3)")
    parser.add_argument("--per-block", action="store_true", help="also list every block's cost")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def _gmacs(macs: float) -> float:
    return round(macs / 1e9, 4)


def run(args: argparse.Namespace) -> int:
    target_rates = None
    if args.target is not None:
        target_rates = middle_gated_schedule(num_blocks(args.arch), args.target, args.always_on_first, args.always_on_last)
    model = build_model(args.arch, args.num_classes, width=args.width, target_rates=target_rates)
    table = cost_table(model, args.image_size)
    report = {
        "arch": args.arch, "width": args.width, "image_size": args.image_size, "num_classes": args.num_classes,
        "unit": "GMACs per image (1 MAC = 1 multiply-accumulate; GFLOPs = 2 x GMACs)",
        "counted": COUNTED,
        "dense_gmacs": {"conv_only": _gmacs(table.dense_macs(CONV_ONLY)), "all": _gmacs(table.dense_macs(KINDS))},
    }
    if args.target is not None:
        report["schedule"] = {"target": args.target, "gated_blocks": model.num_gates, "blocks": len(model.blocks)}
        report["expected_gmacs"] = {
            "conv_only": _gmacs(table.expected_macs(args.target, CONV_ONLY)),
            "all": _gmacs(table.expected_macs(args.target, KINDS)),
        }
    if args.per_block:
        report["blocks"] = [
            {"block": b.index, "gated": b.gated, "branch_gmacs": _gmacs(b.branch.macs()),
             "shortcut_gmacs": _gmacs(b.shortcut.macs()), "gate_gmacs": _gmacs(b.gate.macs())}
            for b in table.blocks
        ]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    dense = report["dense_gmacs"]
    print(f"{args.arch} (width {args.width}) at {args.image_size}x{args.image_size}, {args.num_classes} classes; "
          f"cost of one image")
    print(f"  dense, conv only (the paper's \"GFLOPs\"): {dense['conv_only']:.3f} GMACs = {2 * dense['conv_only']:.3f} GFLOPs")
    print(f"  dense, all counted layers:               {dense['all']:.3f} GMACs = {2 * dense['all']:.3f} GFLOPs")
    if args.target is not None:
        expected = report["expected_gmacs"]
        print(f"  expected at t={args.target} ({model.num_gates} of {len(model.blocks)} blocks gated, gates included):")
        print(f"    conv only {expected['conv_only']:.3f} GMACs, all counted {expected['all']:.3f} GMACs "
              f"= {2 * expected['all']:.3f} GFLOPs")
    print(f"  counted: {COUNTED}")
    if args.per_block:
        print("  block  gated  branch GMACs  shortcut GMACs  gate GMACs")
        for row in report["blocks"]:
            print(f"  {row['block']:5d}  {'yes' if row['gated'] else 'no':5s}  {row['branch_gmacs']:12.4f}  "
                  f"{row['shortcut_gmacs']:14.4f}  {row['gate_gmacs']:10.6f}")
    return 0
