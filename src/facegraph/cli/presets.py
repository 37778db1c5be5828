"""`facegraph presets`: the configurations shipped with the package, one line each."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand

EXAMPLES = """  facegraph presets
  facegraph presets --show cpu/aig-t0.5        # the resolved configuration as TOML
  facegraph presets --show cpu/aig-t0.5 > mine.toml && facegraph train --config mine.toml ...   # edit, then train
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "presets",
                            "List the presets shipped inside the package: paper/ (ResNet-101, 128 px, for a GPU) "
                            "and cpu/ (narrow ResNet-50 for 2 CPU cores).", EXAMPLES)
    parser.add_argument("--show", metavar="PRESET", help="print one preset's resolved configuration as TOML, "
                        "which --config reads back")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facegraph.config import config_to_toml, list_presets, load_config

    if args.show:
        print(config_to_toml(load_config(args.show).to_dict()), end="")
        return 0
    presets = list_presets()
    width = max(len(name) for name in presets)
    for name, summary in presets.items():
        print(f"{name:{width}}  {summary}")
    return 0
