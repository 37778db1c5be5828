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


def checked_number(kind: type, text: str, low: float | None, high: float | None, *, low_open: bool = False,
                   high_open: bool = False) -> float:
    """`text` as an int or float within [low, high] (or open at either end), else an argparse error saying so."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high or value != value:
        if high is None:
            bounds = f"{'>' if low_open else '>='} {low}"
        else:
            bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bounds}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return int(checked_number(int, text, 1, None))


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    return float(checked_number(float, text, 0, None, low_open=True))


def unit_interval(text: str) -> float:
    """An argparse type: a number in (0, 1)."""
    return float(checked_number(float, text, 0, 1, low_open=True, high_open=True))


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
