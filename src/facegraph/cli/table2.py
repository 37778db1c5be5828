"""`facegraph table2`: reproduce the paper's Table II (six models) with one command; finished runs are reused."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand, positive_int

PRESETS = ("cpu", "paper")
EXAMPLES = """  facegraph table2 --preset cpu --data data/lfw10 --out table2-cpu
  facegraph table2 --preset cpu --data data/lfw10 --out table2-cpu --seeds 3 --models resnet50,aig-t0.5
  facegraph table2 --preset cpu --data data/celeba --out table2-celeba --models cosface,cosface-aig-t0.5 \
      --from-scratch --verify-pairs $FACEGRAPH_DATA/lfw/pairs.txt --verify-images $FACEGRAPH_DATA/lfw/lfw-deepfunneled \
      --verify-center-crop 0.45
  facegraph table2 --preset cpu --data data/lfw10 --out table2-cv --folds 5 --models resnet50,aig-t0.5
  facegraph table2 --preset cpu --data data/lfw10 --out table2-cv-b --folds 5 --fold-seed 1 \
      --models resnet50,aig-t0.5                                     # the same on another partition of the photos
  facegraph table2 --preset cpu --data data/lfw10 --out table2-scratch --folds 5 --models resnet50,aig-t0.5 \
      --from-scratch                                                 # every row trained from scratch, 72 epochs
  facegraph table2 --preset paper --data data/imdb-face --out table2-paper      # on a GPU, from scratch
  facegraph table2 --preset paper --data data/imdb-face --out table2-paper-ft --warm-start \
      --finetune-set train.epochs=30                                 # the paper preset's warm-start variant
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "table2",
                            "Train (or reuse) and evaluate the paper's six models, then write table2.md and "
                            "table2.csv. A finished run is reused only if its config is the one asked for.", EXAMPLES)
    parser.add_argument("--preset", required=True, choices=PRESETS,
                        help="paper: ResNet-101 at 128 px for a GPU; cpu: narrow ResNet-50 for 2 cores")
    parser.add_argument("--data", required=True, help="prepared dataset directory")
    parser.add_argument("--out", required=True, help="folder for the run directories and table2.md/.csv")
    parser.add_argument("--seeds", type=positive_int, help="runs per model (mean +- std over seeds) (default: 1, or "
                                                            "one per fold with --folds)")
    parser.add_argument("--folds", type=positive_int, metavar="K",
                        help="k-fold cross-validation: seed s trains and tests on fold s of the dataset re-dealt into "
                             "K folds per person (data.folds), so every photo is tested once per model")
    parser.add_argument("--fold-seed", type=int, default=0, metavar="S",
                        help="with --folds: the seed that deals the photos into folds (data.fold_seed); 0 is the "
                             "partition of every earlier run, another seed repeats the cross-validation on another "
                             "partition of the same photos")
    parser.add_argument("--models", help="comma-separated subset of the preset's models (default: all six)")
    parser.add_argument("--verify-pairs", metavar="PAIRS_TXT",
                        help="also verify every run on these LFW pairs (a column of the table; needs --verify-images)")
    parser.add_argument("--verify-images", metavar="LFW_FOLDER", help="the folder the --verify-pairs images are in")
    parser.add_argument("--verify-center-crop", type=float, nargs="+", metavar="FRACTION",
                        help="centre crop for the verification photos when the runs were trained on other face crops "
                             "(default: the run's own); several: chosen per fold on the other folds, as `verify "
                             "--center-crop` (e.g. 0.45 0.5 0.55 0.6 0.65 for deep-funneled LFW and CelebA runs)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--warm-start", dest="warm_start", action="store_true", default=argparse.SUPPRESS,
                       help="train the ResNet row first, then fine-tune every row (the ResNet too, from itself) from "
                            "the ResNet run of its seed, as ConvNet-AIG's --pretrained, with the preset folder's "
                            "finetune.toml (default for --preset cpu)")
    start.add_argument("--from-scratch", dest="warm_start", action="store_false", default=argparse.SUPPRESS,
                       help="train every row from scratch (default for --preset paper, the paper's setting)")
    parser.add_argument("--finetune-set", dest="finetune_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in the fine-tuning runs only, e.g. --finetune-set train.epochs=30")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run, e.g. --set train.epochs=2 (the cpu presets "
                        "still train train.min_steps = 900 optimizer steps unless --set train.min_steps=0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facegraph.rundir import check_output_folder
    from pathlib import Path

    from facegraph.config import check_overrides
    from facegraph.errors import ConfigError
    from facegraph.recognition.embedding import check_center_crops
    from facegraph.workflows import VerificationPairs, WarmStart, run_table2

    check_output_folder(args.out)
    if (args.verify_pairs is None) != (args.verify_images is None):
        raise ConfigError("--verify-pairs and --verify-images go together")
    # Checked now, not after every run has trained.
    crops = None if args.verify_center_crop is None else check_center_crops(args.verify_center_crop)
    verification = None if args.verify_pairs is None else VerificationPairs(
        Path(args.verify_pairs), Path(args.verify_images), crops)
    models = args.models.split(",") if args.models else None
    if args.folds is not None and args.folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {args.folds}")
    if args.folds and args.seeds not in (None, args.folds):
        raise ConfigError(f"--folds {args.folds} runs one seed per fold: drop --seeds or make it {args.folds}")
    warm = getattr(args, "warm_start", args.preset == "cpu")  # absent unless --warm-start / --from-scratch was given
    if args.finetune_overrides and not warm:
        raise ConfigError("--finetune-set changes the fine-tuning runs of a warm-started table: drop --from-scratch")
    check_overrides(args.finetune_overrides, "--finetune-set")
    markdown, _ = run_table2(args.preset, args.data, args.out, seeds=args.folds or args.seeds or 1,
                             overrides=args.overrides, models=models, verification=verification, folds=args.folds or 0,
                             fold_seed=args.fold_seed,
                             warm_start=WarmStart(tuple(args.finetune_overrides)) if warm else None)
    print(markdown.read_text())
    print(f"written: {markdown} and {markdown.with_suffix('.csv')}")
    return 0
