"""`facegraph report`: figures (Figs. 1-5), Table II rows and one HTML page for one or more runs."""

from __future__ import annotations

import argparse

from facegraph.cli import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="HTML report with the paper's figures and Table II for trained runs")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `facegraph train`")
    parser.add_argument("--out", required=True, help="folder for index.html and the figure PNGs (created if missing)")
    parser.add_argument("--split", default="test", help="evaluated split the figures use (default: test)")
    parser.add_argument("--identities", type=positive_int, default=4, help="identities in the easy/hard grid (default: 4)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: matplotlib would otherwise load on every `facegraph` command.
    from facegraph.analysis.report import comparison_sentence, finding_sentence, write_report

    report = write_report(args.runs, args.out, split=args.split, max_identities=args.identities)
    print(f"report: {report.index} ({len(report.figures)} figures)")
    for result in report.features:
        if result.findings:
            print("  " + finding_sentence(result.run, result.heatmap.feature, result.findings[0]))
    for name, comparison in report.active_gates.items():
        print("  " + comparison_sentence(name, comparison))
    return 0
