"""`facegraph train`: train a ResNet, ConvNet-AIG or ConvNet-IIG from a preset or TOML config (also under torchrun)."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand

EXAMPLES = """  facegraph presets                                                   # what --config accepts by name
  facegraph train --config cpu/aig-t0.5 --data data/lfw10 --out runs/aig
  facegraph train --config cpu/resnet50 --data data/lfw10 --out runs/r50 --set train.epochs=30 --set train.seed=1
  facegraph train --config cpu/aig-t0.5 --data data/lfw10 --out runs/aig-warm --init-from runs/r50   # warm start
  facegraph train --config my-run.toml --data data/lfw10 --out runs/mine --resume     # continue a killed run
  torchrun --standalone --nproc_per_node 2 -m facegraph train --config cpu/resnet50 --data data/lfw10 --out runs/ddp
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "train",
                            "Train a model and write a run directory (docs/run-directory.md). Multi-process: "
                            "torchrun --nproc_per_node N -m facegraph train ...", EXAMPLES)
    parser.add_argument("--config", required=True,
                        help="a preset name (cpu/aig-t0.5; see `facegraph presets`) or a TOML file")
    parser.add_argument("--data", required=True, help="prepared dataset directory (facegraph prepare)")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=3 (repeatable; the cpu presets still "
                        "train train.min_steps = 900 optimizer steps unless --set train.min_steps=0)")
    parser.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                        help="warm start: a trained run (or checkpoint) whose backbone (and classifier, when the "
                             "identities match) initialise the model; the same as --set model.init_from=...")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last committed epoch (train.epochs may grow)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facegraph.config import load_config
    from facegraph.engine.distributed import launched_rank
    from facegraph.engine.train import train

    overrides = [*args.overrides, *([f"model.init_from={args.init_from!r}"] if args.init_from else [])]
    config = load_config(args.config, overrides)
    out = train(config, args.data, args.out, resume=args.resume)
    if launched_rank() == 0:  # under torchrun every rank returns here; one line for the user
        print(f"run written to {out}")
    return 0
