"""`facegraph table2`: reproduce the paper's Table II (six models) with one command; finished runs are reused."""

from __future__ import annotations

import argparse

from facegraph.engine.presets import TABLE2_ROWS
from facegraph.engine.table2 import run_table2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("table2", help="train + evaluate the six Table II models and tabulate them")
    parser.add_argument("--preset", required=True, choices=sorted(TABLE2_ROWS),
                        help="paper: ResNet-101 at 128 px for a GPU; cpu: narrow ResNet-50 at 64 px for 2 cores")
    parser.add_argument("--data", required=True, help="prepared dataset directory")
    parser.add_argument("--out", required=True, help="folder for the six run directories and table2.md/.csv")
    parser.add_argument("--seeds", type=int, default=1, help="runs per model (mean +- std over seeds)")
    parser.add_argument("--models", help="comma-separated subset of the preset's models")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run, e.g. --set train.epochs=2")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    models = args.models.split(",") if args.models else None
    markdown, _ = run_table2(args.preset, args.data, args.out, seeds=args.seeds, overrides=args.overrides,
                             models=models)
    print(markdown.read_text())
    print(f"written: {markdown} and {markdown.with_suffix('.csv')}")
    return 0
