"""`facegraph demo`: the main job. LFW, three models at CPU scale, evaluation and report in one folder."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand

EXAMPLES = """  FACEGRAPH_DATA=../shared/data facegraph demo --out facegraph-demo
  facegraph demo --data ~/datasets/lfw --out facegraph-demo       # a folder holding lfw/, or the LFW folder itself
  facegraph demo --out quick --set train.epochs=2 --set train.min_steps=0 --no-report   # a smoke test
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "demo",
                            "The main job: prepare LFW (>= 10 photos per person, 64 px), train a ResNet-50 (width "
                            "0.25), a ConvNet-AIG [t=0.5] and a ConvNet-IIG (Gender), evaluate them, write Table II "
                            "and the HTML report. Finished runs are reused.", EXAMPLES)
    parser.add_argument("--out", default="facegraph-demo", help="folder for everything the demo writes")
    parser.add_argument("--data", help="folder holding lfw/, or the LFW folder itself (default: $FACEGRAPH_DATA, "
                        "else LFW is downloaded)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run, e.g. --set train.epochs=2 (the cpu presets "
                        "still train train.min_steps = 900 optimizer steps unless --set train.min_steps=0)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facegraph.rundir import check_output_folder
    from facegraph.workflows import DEMO_MODELS, run_demo

    check_output_folder(args.out)

    result = run_demo(args.out, args.data, args.overrides, report=not args.no_report)
    print(result.table.read_text())
    print(f"dataset:  {result.dataset}")
    for name in DEMO_MODELS:
        print(f"run:      {result.runs[name]}")
    print(f"table:    {result.table}")
    if result.report is not None:
        print(f"report:   {result.report}")
    return 0
