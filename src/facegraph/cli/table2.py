"""`facegraph table2`: reproduce the paper's Table II (six models) with one command; finished runs are reused."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand, positive_float, positive_int

PRESETS = ("cpu", "paper")
EXAMPLES = """  facegraph table2 --preset cpu --data data/lfw10 --out table2-cpu
  facegraph table2 --preset cpu --data data/lfw10 --out table2-cpu --seeds 3 --models resnet50,aig-t0.5
  facegraph table2 --preset cpu --data data/celeba --out table2-celeba --models cosface,cosface-aig-t0.5 \
      --verify-pairs $FACEGRAPH_DATA/lfw/pairs.txt --verify-images $FACEGRAPH_DATA/lfw/lfw-deepfunneled \
      --verify-center-crop 0.45
  facegraph table2 --preset cpu --data data/lfw10 --out table2-cpu --seeds 3 --models resnet50,aig-t0.5 \
      --warm-start 12                                                # fine-tune each row from the ResNet run
  facegraph table2 --preset cpu --data data/lfw10 --out table2-cv --folds 5 --models resnet50,aig-t0.5
  facegraph table2 --preset paper --data data/imdb-face --out table2-paper      # on a GPU
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
    parser.add_argument("--models", help="comma-separated subset of the preset's models (default: all six)")
    parser.add_argument("--verify-pairs", metavar="PAIRS_TXT",
                        help="also verify every run on these LFW pairs (a column of the table; needs --verify-images)")
    parser.add_argument("--verify-images", metavar="LFW_FOLDER", help="the folder the --verify-pairs images are in")
    parser.add_argument("--verify-center-crop", type=float, metavar="FRACTION",
                        help="centre crop for the verification photos (e.g. 0.45 for deep-funneled LFW when the runs "
                             "were trained on CelebA face crops; default: the run's own)")
    parser.add_argument("--warm-start", type=positive_int, metavar="EPOCHS",
                        help="fine-tune every row (the ResNet too) for EPOCHS from the table's ResNet run of the same "
                             "seed (ConvNet-AIG's --pretrained); rows then share total epochs and schedule")
    parser.add_argument("--warm-start-lr", type=positive_float, default=0.01, help="learning rate of the fine-tuning")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run, e.g. --set train.epochs=2")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facegraph.rundir import check_output_folder
    from pathlib import Path

    from facegraph.errors import ConfigError
    from facegraph.workflows import VerificationPairs, WarmStart, run_table2

    check_output_folder(args.out)
    if (args.verify_pairs is None) != (args.verify_images is None):
        raise ConfigError("--verify-pairs and --verify-images go together")
    verification = None if args.verify_pairs is None else VerificationPairs(
        Path(args.verify_pairs), Path(args.verify_images), args.verify_center_crop)
    models = args.models.split(",") if args.models else None
    if args.folds is not None and args.folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {args.folds}")
    if args.folds and args.seeds not in (None, args.folds):
        raise ConfigError(f"--folds {args.folds} runs one seed per fold: drop --seeds or make it {args.folds}")
    markdown, _ = run_table2(args.preset, args.data, args.out, seeds=args.folds or args.seeds or 1,
                             overrides=args.overrides, models=models, verification=verification, folds=args.folds or 0,
                             warm_start=WarmStart(args.warm_start, args.warm_start_lr) if args.warm_start else None)
    print(markdown.read_text())
    print(f"written: {markdown} and {markdown.with_suffix('.csv')}")
    return 0
