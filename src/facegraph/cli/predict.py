"""`facegraph predict`: top-5 identities, the blocks that ran, attributes read out from the gates and the cost, per photo."""

from __future__ import annotations

import argparse
import json
import sys

from facegraph.cli import add_subcommand, positive_int

EXAMPLES = """  facegraph predict runs/iig photo.jpg
  facegraph predict runs/iig photos/*.jpg --json > predictions.json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "predict", "identify faces in photos with a trained run and show their graphs",
                            "Top-5 identities, the gated blocks that ran, attributes read out from the gates (eq. 5) "
                            "and the cost of each photo. An unreadable photo is named; the others are still answered.",
                            EXAMPLES)
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `facegraph train`")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photos (any size; cut as the run's dataset was prepared)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="weights to use")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="photos per forward pass")
    parser.set_defaults(run=run)


def _print_text(prediction) -> None:
    print(prediction.image)
    print("  top-5: " + ", ".join(f"{name} {probability:.3f}" for name, probability in prediction.top5))
    num_gates = len(prediction.gates)
    if num_gates:
        opened = " ".join(map(str, prediction.open_gates)) or "none"
        print(f"  gated blocks run: {len(prediction.open_gates)} of {num_gates} ({opened}); "
              f"blocks run: {prediction.blocks_run} of {prediction.blocks_total}")
    else:
        print(f"  blocks run: all {prediction.blocks_total} (no gates)")
    for estimate in prediction.attributes:
        others = ", ".join(f"{label} {distance:.2f}" for label, distance in estimate.distances.items() if label != estimate.label)
        print(f"  {estimate.feature}: {estimate.label} (eq. 5 distance {estimate.distance:.2f}; {others}; {estimate.method})")
    print(f"  GMACs: {prediction.gmacs:.4f} of {prediction.dense_gmacs:.4f} dense")


def run(args: argparse.Namespace) -> int:
    from facegraph.engine.predict import PhotoPrediction, PredictionFailure, predict_run

    results = predict_run(args.run_dir, args.images, checkpoint=args.checkpoint, batch_size=args.batch_size)
    failures = [r for r in results if isinstance(r, PredictionFailure)]
    if args.json:
        print(json.dumps({"run": args.run_dir, "predictions": [r.to_dict() for r in results]}, indent=2))
    else:
        for result in results:
            if isinstance(result, PhotoPrediction):
                _print_text(result)
    for failure in failures:
        print(f"facegraph predict: error: {failure.error}", file=sys.stderr)
    return 2 if failures else 0
