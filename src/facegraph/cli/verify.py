"""`facegraph verify`: 1:1 face verification of a run on LFW-style pairs (10-fold protocol, ROC AUC, TAR@FAR)."""

from __future__ import annotations

import argparse
import json

from facegraph.cli import add_layout_option, add_subcommand, positive_int, with_layout

EXAMPLES = """  facegraph verify runs/celeba --pairs ../shared/data/lfw/pairs.txt --images ../shared/data/lfw/lfw-deepfunneled --flip
  facegraph verify runs/celeba --pairs pairs.txt --images lfw-deepfunneled --center-crop 0.45 0.5 0.55 0.6   # per fold
  facegraph verify runs/aig --pairs-from data/celeba64 --num-pairs 600 --seed 0 --json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "verify",
        "The LFW view-2 protocol with the run's embeddings (cosine similarity): per fold, the threshold that is best "
        "on the other folds decides the fold's pairs; reported are accuracy mean +- std over folds, ROC AUC, TAR at "
        "FAR 1e-2 and 1e-3 (with the number of mismatched pairs behind each), pairs used and skipped, and mean GMACs "
        "per image. Each distinct image is embedded once, cut as the run's dataset was prepared. Pairs with a missing "
        "image are skipped and listed (more than half missing is an error); pairs showing a person of the run's "
        "training identities are counted and warned about. Writes RUN/verify/NAME/summary.json, pairs.csv "
        "(per pair: similarity, correct at the fold threshold, active gates, attribute read-outs) and "
        "skipped-pairs.txt.", EXAMPLES)
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `facegraph train`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", help="an LFW pairs file (pairs.txt, view 2; or pairsDevTest.txt, view 1)")
    source.add_argument("--pairs-from", metavar="PREPARED",
                        help="draw seeded matched/mismatched pairs (10 folds of disjoint people) from a prepared dataset")
    parser.add_argument("--images", help="with --pairs: the LFW-layout folder the pairs' images are in "
                                         "(lfw-deepfunneled/<Name>/<Name>_0001.jpg)")
    parser.add_argument("--num-pairs", type=positive_int, default=600,
                        help="with --pairs-from: pairs in all, a multiple of 20 (half matched)")
    parser.add_argument("--seed", type=int, default=0, help="with --pairs-from: the seed of the pair draw")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test",
                        help="with --pairs-from: the split whose images are paired")
    parser.add_argument("--flip", action="store_true",
                        help="also report horizontal-flip test-time augmentation (embedding of image + mirror image)")
    parser.add_argument("--name", help="output folder under RUN/verify/ (default: the pairs file's stem, or "
                                       "<dataset>-<split>-n<N>-s<S>)")
    parser.add_argument("--center-crop", type=float, nargs="+", metavar="FRACTION",
                        help="with --pairs: the centre crop for the pairs' photos (default: the run's own), for photos "
                             "framed unlike the run's training faces; several values: each fold is decided with the "
                             "crop that verifies best on the other folds, as the threshold is (e.g. 0.45 0.5 0.55 0.6 "
                             "0.65 for deep-funneled LFW and a run trained on CelebA's face crops)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="weights to use")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    add_layout_option(parser, "--batch-size")
    parser.set_defaults(run=run)


def _print_text(summary: dict) -> None:
    print(f"{summary['run']}: {summary['pairs_used']} of {summary['pairs_total']} pairs used "
          f"({summary['pairs_matched']} matched, {summary['pairs_mismatched']} mismatched); "
          f"{summary['pairs_skipped_missing']} skipped for a missing image, "
          f"{summary['pairs_skipped_unreadable']} for an unreadable one (listed in {summary['skipped_pairs_file']})")
    if summary["training_identity_pairs"]:
        print(f"  WARNING: {summary['training_identity_pairs']} pairs show people the run was trained on")
    for variant, result in summary["results"].items():
        print(f"  {variant}: accuracy {100 * result['accuracy_mean']:.2f} +- {100 * result['accuracy_std']:.2f} % "
              f"over {len(result['folds'])} folds, ROC AUC {result['auc']:.4f}, "
              f"{result['mean_gmacs_per_image']:.4f} GMACs per image")
        if len(summary["center_crops"]) > 1:
            print(f"    centre crop chosen per fold on the other folds: "
                  f"{' '.join(f'{c:g}' for c in result['fold_center_crops'])} (each crop alone: "
                  + ", ".join(f"{crop} {100 * accuracy:.2f} %" for crop, accuracy
                              in result["accuracy_at_each_center_crop"].items()) + ")")
        for tar in result["tar_at_far"]:
            note = "" if tar["resolved"] else " (not resolved: fewer than 1/FAR mismatched pairs)"
            print(f"    TAR {100 * tar['tar']:.2f} % at FAR {tar['far']:g}: {tar['false_accepts']} false accepts "
                  f"of {tar['mismatched_pairs']} mismatched pairs{note}")


def run(args: argparse.Namespace) -> int:
    from facegraph.engine.trained import load_trained
    from facegraph.errors import ConfigError
    from facegraph.recognition.run_verification import lfw_pair_set, prepared_pair_set, verify_pairs

    if args.pairs is not None and args.images is None:
        raise ConfigError("--pairs needs --images, the folder its images are in")
    if args.pairs_from is not None and args.images is not None:
        raise ConfigError("--images goes with --pairs; --pairs-from reads the prepared dataset's own images")
    if args.center_crop is not None and args.pairs_from is not None:
        raise ConfigError("--center-crop goes with --pairs; a prepared dataset's photos are already cut")
    trained = load_trained(args.run_dir, args.checkpoint)
    if args.pairs is not None:
        pair_set = lfw_pair_set(trained, args.pairs, args.images, args.center_crop)
    else:
        pair_set = prepared_pair_set(trained, args.pairs_from, args.num_pairs, args.seed, args.split)
    trained = with_layout(args, trained, len(pair_set.person_of))
    outcome = verify_pairs(trained, pair_set, out_name=args.name, flip=args.flip, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(outcome.summary, indent=2))
    else:
        _print_text(outcome.summary)
        print(f"  wrote {outcome.summary_path} and {outcome.pairs_path}")
    return 0
