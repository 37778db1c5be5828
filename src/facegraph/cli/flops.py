"""`facegraph flops`: the per-image cost of an architecture, dense or at a target rate."""

from __future__ import annotations

import argparse
import json

from facegraph.cli import add_subcommand, checked_number, positive_float, positive_int, unit_interval

COUNTED = "Conv2d (conv), Linear (linear), BatchNorm (norm: 1 MAC per element); not counted: ReLU, additions, pooling"
ARCH_NAMES = (  # models.ARCHS, copied so that --help loads no torch (tests/test_cli.py checks the copy)
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20", "resnet32", "resnet56", "resnet110")
EXAMPLES = """  facegraph flops                                   # the paper's ResNet-101 at 128 px: 2.547 conv-only GMACs
  facegraph flops --target 0.5                      # expected cost with the middle 23 blocks gated at t = 0.5
  facegraph flops --config cpu/aig-t0.5 --image-size 64 --num-classes 158   # exactly the network a preset trains
  facegraph flops --arch resnet50 --image-size 224 --num-classes 1000 --per-block --json
"""


def image_size(text: str) -> int:
    return int(checked_number(int, text, 32, None))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "flops",
                            "Per-image cost, measured layer by layer with forward hooks. 1 MAC = one "
                            "multiply-accumulate, GFLOPs = 2 x GMACs; the paper's \"GFLOPs\" are conv-only GMACs.",
                            EXAMPLES)
    parser.add_argument("--config", help="a preset (cpu/aig-t0.5) or TOML file: its architecture, width, gated "
                        "blocks and target rate (then --arch, --width, --target and --always-on-* are not used)")
    parser.add_argument("--arch", default="resnet101", choices=ARCH_NAMES, help="architecture")
    parser.add_argument("--image-size", type=image_size, default=128, help="input side in pixels")
    parser.add_argument("--num-classes", type=positive_int, default=750, help="classifier outputs (identities)")
    parser.add_argument("--width", type=positive_float, default=1.0, help="channel width multiplier")
    parser.add_argument("--target", type=unit_interval,
                        help="expected cost when each gated block runs with this probability")
    parser.add_argument("--always-on-first", type=int,
                        help="blocks at the start that are never gated (default: the paper's 7 for resnet101, "
                             "else the first stage)")
    parser.add_argument("--always-on-last", type=int,
                        help="blocks at the end that are never gated (default: the paper's 3 for resnet101, else 1)")
    parser.add_argument("--per-block", action="store_true", help="also list every block's cost")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def _schedule_from_options(args: argparse.Namespace) -> tuple[str, float, list[float] | None]:
    """Architecture, width and per-block target rates from --arch/--target/--always-on-*."""
    from facegraph.graphs import middle_gated_schedule
    from facegraph.graphs.gating import PAPER_ALWAYS_ON_FIRST, PAPER_ALWAYS_ON_LAST
    from facegraph.models import num_blocks, stage_first_blocks

    if args.target is None:
        return args.arch, args.width, None
    if args.arch == "resnet101":
        first, last = PAPER_ALWAYS_ON_FIRST, PAPER_ALWAYS_ON_LAST
    else:
        first, last = stage_first_blocks(args.arch)[1], 1
    first = first if args.always_on_first is None else args.always_on_first
    last = last if args.always_on_last is None else args.always_on_last
    return args.arch, args.width, middle_gated_schedule(num_blocks(args.arch), args.target, first, last)


def _gmacs(macs: float) -> float:
    return round(macs / 1e9, 4)


def run(args: argparse.Namespace) -> int:
    from facegraph.flops import CONV_ONLY, KINDS, cost_table
    from facegraph.models import build_model

    if args.config is not None:
        from facegraph import paper
        from facegraph.config import load_config

        config = load_config(args.config)
        args.arch, args.width = config.model.arch, config.model.width
        rates = paper.target_rates(config)
        args.target = config.loss.target_rate if rates is not None else None
        model = paper.model_from_config(config, args.num_classes)
    else:
        arch, width, rates = _schedule_from_options(args)
        model = build_model(arch, args.num_classes, width=width, target_rates=rates)
    table = cost_table(model, args.image_size)
    report = {
        "config": args.config, "arch": args.arch, "width": args.width, "image_size": args.image_size, "num_classes": args.num_classes,
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
