"""The `facegraph` command: one module per subcommand, each with `add_parser` and `run`.

The CLI parses arguments and prints; everything it reports is computed by the library. Subcommand modules import
the library (and torch) inside `run`, so `facegraph --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from facegraph import __version__
from facegraph.errors import FacegraphError

# In the order `facegraph --help` lists them: the path a batch of photos takes, then the tools.
SUBCOMMANDS = ("prepare", "train", "evaluate", "table2", "demo", "report", "predict", "embed", "verify", "export", "flops", "presets")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the Examples sections as written."""


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def unit_interval(text: str) -> float:
    """An argparse type: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text}")
    return value


def verbose_parent() -> argparse.ArgumentParser:
    """-v/--verbose, accepted before or after the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debug messages and show tracebacks")
    return parent


def add_subcommand(subparsers: argparse._SubParsersAction, name: str, summary: str, description: str,
                   examples: str) -> argparse.ArgumentParser:
    """A subcommand parser with the house conventions: defaults shown, -v accepted, an Examples section."""
    return subparsers.add_parser(name, help=summary, description=description, epilog="examples:\n" + examples,
                                 formatter_class=HelpFormatter, parents=[verbose_parent()])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facegraph", formatter_class=HelpFormatter,
        description="Face recognition with adaptive (ConvNet-AIG) and interpretable (ConvNet-IIG) inference graphs.",
        epilog="examples:\n  facegraph demo --out facegraph-demo\n  facegraph presets\n"
               "  facegraph train --config cpu/aig-t0.5 --data data/lfw10 --out runs/aig\n"
               "  facegraph <command> --help",
    )
    parser.add_argument("--version", action="version", version=f"facegraph {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"facegraph.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except FacegraphError as error:
        if args.verbose:
            raise
        print(f"facegraph {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A filesystem fault the library did not foresee still gets one line naming the file.
        if args.verbose:
            raise
        where = f" {error.filename}" if error.filename else ""
        print(f"facegraph {args.command}: error:{where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facegraph {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
