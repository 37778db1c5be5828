"""`facegraph demo`: the main job. LFW, three models at CPU scale, evaluation and report in one folder."""

from __future__ import annotations

import argparse

from facegraph.engine.demo import DEMO_MODELS, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="prepare LFW, train ResNet/AIG/IIG at CPU scale, evaluate, report")
    parser.add_argument("--out", default="facegraph-demo", help="folder for everything the demo writes")
    parser.add_argument("--data", help="folder holding lfw/, or the LFW folder itself (default: $FACEGRAPH_DATA, "
                        "else download LFW)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run, e.g. --set train.epochs=2")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.out, args.data, args.overrides, report=not args.no_report)
    print(result.table.read_text())
    print(f"dataset:  {result.dataset}")
    for name in DEMO_MODELS:
        print(f"run:      {result.runs[name]}")
    print(f"table:    {result.table}")
    if result.report is not None:
        print(f"report:   {result.report}")
    return 0
