"""The `facegraph` command: one module per subcommand, each with `add_parser` and `run`.

The CLI parses arguments and prints; everything it reports is computed by the library.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from facegraph.errors import FacegraphError

# In the order `facegraph --help` lists them: the path a batch of photos takes, then the tools.
SUBCOMMANDS = ("prepare", "train", "evaluate", "table2", "demo", "report", "predict", "flops")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facegraph",
        description="Face recognition with adaptive (ConvNet-AIG) and interpretable (ConvNet-IIG) inference graphs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
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
        print(f"facegraph {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facegraph {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
