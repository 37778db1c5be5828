"""The `facegraph` command: one module per subcommand, each with `add_parser` and `run`.

The CLI parses arguments and prints; everything it reports is computed by the library.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from facegraph.errors import FacegraphError

# Subcommand name -> module under facegraph.cli that implements it.
SUBCOMMANDS = {
    "flops": "flops",
    "prepare": "prepare",
    "train": "train",
    "evaluate": "evaluate",
    "table2": "table2",
    "demo": "demo",
    "report": "report",
    "predict": "predict",
}


def _available_modules() -> dict:
    modules = {}
    for name, module_name in SUBCOMMANDS.items():
        try:
            modules[name] = importlib.import_module(f"facegraph.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"facegraph.cli.{module_name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegraph", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _available_modules().items():
        module.add_parser(subparsers)
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
