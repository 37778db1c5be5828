"""`facegraph report`: figures (Figs. 1-5), Table II rows and one HTML page for one or more runs."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand, positive_int

EXAMPLES = """  facegraph report runs/resnet runs/aig runs/iig --out report
  facegraph report table2-cpu/*-seed0 --out report --split val
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "report",
                            "Write index.html and one PNG per figure (Figs. 1-5, Table II) for evaluated runs.",
                            EXAMPLES)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `facegraph train`")
    parser.add_argument("--out", required=True, help="folder for index.html and the figure PNGs (created if missing)")
    parser.add_argument("--split", default="test", help="evaluated split the figures use ")
    parser.add_argument("--identities", type=positive_int, default=4, help="identities in the easy/hard grid ")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: matplotlib would otherwise load on every `facegraph` command.
    from facegraph.analysis.report import comparison_sentence, finding_sentence, write_report
    from facegraph.rundir import check_output_folder

    check_output_folder(args.out)

    report = write_report(args.runs, args.out, split=args.split, max_identities=args.identities)
    print(f"report: {report.index} ({len(report.figures)} figures)")
    for result in report.features:
        if result.findings:
            print("  " + finding_sentence(result.run, result.heatmap.feature, result.findings[0]))
    for name, comparison in report.active_gates.items():
        print("  " + comparison_sentence(name, comparison))
    return 0
