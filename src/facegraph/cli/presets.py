"""`facegraph presets`: the configurations shipped with the package, one line each."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand

EXAMPLES = """  facegraph presets
  facegraph presets --show cpu/aig-t0.5        # the resolved configuration, as TOML-like key = value lines
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "presets",
                            "List the presets shipped inside the package: paper/ (ResNet-101, 128 px, for a GPU) "
                            "and cpu/ (narrow ResNet-50 for 2 CPU cores).", EXAMPLES)
    parser.add_argument("--show", metavar="PRESET", help="print one preset's resolved configuration")
    parser.set_defaults(run=run)


def _flatten(data: dict, prefix: str = "") -> list[str]:
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines += _flatten(value, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key} = {value!r}")
    return lines


def run(args: argparse.Namespace) -> int:
    from facegraph.config import list_presets, load_config

    if args.show:
        print("\n".join(_flatten(load_config(args.show).to_dict())))
        return 0
    presets = list_presets()
    width = max(len(name) for name in presets)
    for name, summary in presets.items():
        print(f"{name:{width}}  {summary}")
    return 0
