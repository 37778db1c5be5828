"""The `facegraph` command: one module per subcommand, each with `add_parser` and `run`.

The CLI parses arguments and prints; everything it reports is computed by the library. Subcommand modules import
the library (and torch) inside `run`, so `facegraph --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import TYPE_CHECKING

from facegraph import __version__
from facegraph.engine.allocator import keep_freed_memory
from facegraph.errors import FacegraphError, StoppedWithRankZero

if TYPE_CHECKING:
    from facegraph.engine.trained import TrainedRun

# Name -> one-line summary, in the order `facegraph --help` lists them: the path a batch of photos takes, then the
# tools. A subcommand's module is imported only when its own parser is needed (see build_parser).
SUBCOMMANDS = {
    "prepare": "prepare a face dataset (IMDb-Face, a folder per identity such as LFW, CelebA)",
    "train": "train a model; writes a run directory",
    "evaluate": "evaluate a run directory on a split",
    "table2": "train + evaluate the six Table II models and tabulate them",
    "demo": "prepare LFW, train ResNet/AIG/IIG at CPU scale, evaluate, report",
    "report": "HTML report with the paper's figures and Table II for trained runs",
    "predict": "identify faces in photos with a trained run and show their graphs",
    "embed": "face embeddings (pooled features before the classifier) of photos",
    "verify": "face verification on pairs: 10-fold accuracy, ROC AUC, TAR at FAR",
    "export": "export a trained run's model for sharing (weights, TorchScript, ONNX)",
    "flops": "per-image MACs/FLOPs of an architecture or a preset",
    "presets": "list the shipped presets (what --config accepts by name)",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the Examples sections as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # An option whose help states its default in words, or that has none, gets no second "(default: None)".
        if action.default is None or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


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


def crop_fraction(text: str) -> float:
    """An argparse type: the side of a photo's central square kept, as a fraction in [0.05, 1]."""
    return float(checked_number(float, text, 0.05, 1.0))


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    return float(checked_number(float, text, 0, None, low_open=True))


def unit_interval(text: str) -> float:
    """An argparse type: a number in (0, 1)."""
    return float(checked_number(float, text, 0, 1, low_open=True, high_open=True))


# engine.layout.LAYOUT_CHOICES, spelled out here so that parsing arguments does not import torch (a test checks both).
LAYOUT_NAMES = ("channels_last", "nchw", "auto")


def add_layout_option(parser: argparse.ArgumentParser, batch: str) -> None:
    """--layout: the memory layout of the fused inference graph (engine/layout.py)."""
    parser.add_argument("--layout", choices=LAYOUT_NAMES, default="channels_last",
                        help=f"memory layout of the fused inference graph; auto times both on this machine at {batch} "
                             f"and takes the faster (same function, other rounding, so logits may then differ in "
                             f"their last bits from run to run)")


def with_layout(args: argparse.Namespace, trained: TrainedRun, images: int) -> TrainedRun:
    """`trained` with its fused graph laid out as --layout; auto is timed at the batch the command will run:
    --batch-size, or all `images` when fewer (the library logs what it measured)."""
    from facegraph.engine.layout import use_layout

    return use_layout(trained, args.layout, batch_size=max(1, min(args.batch_size, images)))[0]


def verbose_parent() -> argparse.ArgumentParser:
    """-v/--verbose, accepted before or after the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debug messages and show tracebacks")
    return parent


def add_subcommand(subparsers: argparse._SubParsersAction, name: str, description: str,
                   examples: str) -> argparse.ArgumentParser:
    """A subcommand parser with the house conventions: its SUBCOMMANDS summary, defaults shown, -v accepted, an
    Examples section."""
    return subparsers.add_parser(name, help=SUBCOMMANDS[name], description=description,
                                 epilog="examples:\n" + examples, formatter_class=HelpFormatter,
                                 parents=[verbose_parent()])


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given `argv`, only the subcommand it names is built in full (the others are listed by
    name and summary), so that `facegraph --help` imports no subcommand module."""
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
    chosen = None if argv is None else next((word for word in argv if word in SUBCOMMANDS), "")
    for name, summary in SUBCOMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(f"facegraph.cli.{name}").add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    keep_freed_memory()  # commands that run networks on CPU reuse freed tensor buffers (engine/allocator.py)
    try:
        return int(args.run(args) or 0)
    except StoppedWithRankZero:
        return 2  # rank 0 prints the reason: one line for the user, not one per process
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
