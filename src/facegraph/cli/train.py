"""`facegraph train`: train a ResNet, ConvNet-AIG or ConvNet-IIG from a TOML config (also under torchrun)."""

from __future__ import annotations

import argparse

from facegraph.engine.config import load_config
from facegraph.engine.train import train


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model; writes a run directory",
                                   description="Train a model. Multi-process: torchrun --nproc_per_node N -m facegraph train ...")
    parser.add_argument("--config", required=True, help="TOML preset, e.g. configs/cpu/aig-t0.5.toml")
    parser.add_argument("--data", required=True, help="prepared dataset directory (facegraph prepare)")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    out = train(config, args.data, args.out, resume=args.resume)
    print(f"run written to {out}")
    return 0
