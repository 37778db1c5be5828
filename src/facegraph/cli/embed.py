"""`facegraph embed`: L2-normalised face embeddings, gate vectors and per-image cost of photos, as one .npz file."""

from __future__ import annotations

import argparse
import sys

from facegraph.cli import add_layout_option, add_subcommand, positive_int, with_layout

EXAMPLES = """  facegraph embed runs/aig photos/*.jpg --out embeddings.npz
  facegraph embed runs/aig ../shared/data/lfw/lfw-deepfunneled --out lfw.npz
  facegraph embed runs/aig data/celeba64 --split test --out celeba-test.npz --flip
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "embed",
        "Embeds photos with a trained run: the pooled features before the classifier, L2-normalised, computed with "
        "deterministic skipping gates. Writes an .npz with names (image paths), embeddings (N, D), gates (N, k), "
        "gmacs (N,: each image's cost from the run's cost table) and dense_gmacs; with --flip also flip_embeddings "
        "(image + mirror image, renormalised) and flip_gmacs. Photos are cut as the run's dataset was prepared; "
        "images of a prepared dataset are already cut faces and are only resized and normalised. An unreadable photo "
        "is named and skipped (exit status 2).", EXAMPLES)
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `facegraph train`")
    parser.add_argument("images", nargs="+", metavar="IMAGES_OR_PREPARED",
                        help="photos, one folder of photos (searched recursively), or one prepared dataset")
    parser.add_argument("--out", required=True, help="the .npz file to write")
    parser.add_argument("--split", choices=("train", "val", "test"),
                        help="with a prepared dataset: embed only this split (default: every image)")
    parser.add_argument("--flip", action="store_true", help="also store horizontal-flip test-time-augmented embeddings")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="weights to use")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="photos per forward pass")
    add_layout_option(parser, "--batch-size")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facegraph.engine.trained import load_trained
    from facegraph.recognition.embedding import embed_images, resolve_images

    trained = load_trained(args.run_dir, args.checkpoint)
    paths, preprocessing = resolve_images(trained, args.images, args.split)
    trained = with_layout(args, trained, len(paths))
    embedded = embed_images(trained, paths, preprocessing=preprocessing, batch_size=args.batch_size, flip=args.flip)
    if embedded.names:
        out = embedded.save(args.out)
        print(f"{out}: {len(embedded.names)} embeddings of dimension {embedded.embeddings.shape[1]}, "
              f"{embedded.gates.shape[1]} gates, mean {embedded.gmacs.mean():.4f} GMACs per image "
              f"(dense {embedded.dense_gmacs:.4f})")
    for image, error in embedded.failures:
        print(f"facegraph embed: error: {error}", file=sys.stderr)
    if not embedded.names:
        print("facegraph embed: error: no image could be read; nothing written", file=sys.stderr)
    return 2 if embedded.failures else 0
