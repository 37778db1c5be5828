"""`facegraph predict`: top-5 identities, the blocks that ran, attributes read out from the gates and the cost, per photo."""

from __future__ import annotations

import argparse
import json
import sys

from facegraph.cli import add_layout_option, add_subcommand, crop_fraction, positive_int, unit_interval, with_layout

EXAMPLES = """  facegraph predict runs/iig photo.jpg
  facegraph predict runs/iig photos/*.jpg --json > predictions.json
  facegraph predict runs/iig photo.jpg --gallery staff/ --far 1e-3   # open set: staff/<person>/<image>.jpg
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "predict",
                            "Top-5 identities, the gated blocks that ran, attributes read out from the gates (eq. 5) "
                            "and the cost of each photo. An unreadable photo is named; the others are still answered. "
                            "With --gallery, each photo is also searched among the gallery's people (open set): "
                            "the answer is the best-scoring person, or 'unknown' when that score is below a threshold "
                            "calibrated at --far on impostor pairs of the gallery itself; the closed-set top-5 of the "
                            "classifier is still shown. A photo that is itself a gallery image (or a copy) is marked: "
                            "it matches itself.",
                            EXAMPLES)
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `facegraph train`")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photos (any size; cut as the run's dataset was prepared)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="weights to use")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="photos per forward pass")
    parser.add_argument("--gallery", metavar="DIR_OR_PREPARED",
                        help="open-set identification: also rank the people of this gallery (a folder with one "
                             "sub-folder of images per person, or a prepared dataset) by cosine similarity of "
                             "embeddings; the gallery's embeddings are cached in RUN/galleries/ and rebuilt when its "
                             "files change")
    parser.add_argument("--far", type=unit_interval, default=1e-3,
                        help="with --gallery: the false-accept rate the threshold is calibrated at, on the gallery's "
                             "own impostor pairs (every two images of different gallery people); a best score below "
                             "the threshold answers 'unknown'. It is a rate per image pair: a stranger is compared "
                             "with every gallery image (a person scores their best image), so up to (gallery images "
                             "x FAR) of strangers are matched to someone (docs/results.md measures it)")
    parser.add_argument("--center-crop", type=crop_fraction, metavar="F",
                        help="cut the photos (and a folder gallery's) with this centre crop instead of the run's, for "
                             "photos framed unlike its training faces (e.g. 0.45 for 250 px LFW photos and a model "
                             "trained on CelebA's face crops; `verify --center-crop` chooses one on pairs)")
    add_layout_option(parser, "--batch-size")
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


def _search_dict(result) -> dict:
    return {"answer": result.answer, "best_score": result.best_score, "in_gallery": result.in_gallery,
            "ranked": [{"person": name, "score": score} for name, score in result.ranked]}


def run(args: argparse.Namespace) -> int:
    from facegraph.engine.predict import PhotoPrediction, PredictionFailure, predict_images
    from facegraph.engine.trained import load_trained

    searches: dict = {}
    gallery = None
    trained = with_layout(args, load_trained(args.run_dir, args.checkpoint), len(args.images))
    results = predict_images(trained, args.images, batch_size=args.batch_size, center_crop=args.center_crop)
    if args.gallery is not None:
        from facegraph.recognition.run_gallery import load_gallery, search_gallery

        gallery = load_gallery(trained, args.gallery, far=args.far, batch_size=args.batch_size,
                               center_crop=args.center_crop)
        searches = search_gallery(trained, gallery, args.images, batch_size=args.batch_size,
                                  center_crop=args.center_crop)
    failures = [r for r in results if isinstance(r, PredictionFailure)]
    if args.json:
        crop = args.center_crop if args.center_crop is not None else trained.dataset.get("center_crop", 1.0)
        document = {"run": args.run_dir, "layout": trained.layout, "center_crop": crop,
                    "predictions": [r.to_dict() for r in results]}
        if gallery is not None:
            document["gallery"] = {"source": args.gallery, **gallery.to_dict()}
            for prediction in document["predictions"]:
                if prediction["image"] in searches:
                    prediction["gallery"] = _search_dict(searches[prediction["image"]])
        print(json.dumps(document, indent=2))
    else:
        if gallery is not None:
            named = (f"up to {gallery.images} x {gallery.far:g} = {gallery.false_alarm_bound:.3g}"
                     if gallery.false_alarm_bound < 1 else
                     f"{gallery.images} images x {gallery.far:g} is over 1, so up to every one")
            print(f"gallery {args.gallery}: {len(gallery.gallery.people)} people, {gallery.images} images; threshold "
                  f"{gallery.threshold:.4f} at FAR {gallery.far:g} over {gallery.impostor_pairs} impostor pairs "
                  f"(strangers named: {named})")
        for result in results:
            if isinstance(result, PhotoPrediction):
                _print_text(result)
                if result.image in searches:
                    search = searches[result.image]
                    ranked = ", ".join(f"{name} {score:.3f}" for name, score in search.ranked)
                    print(f"  gallery: {search.answer} (best {search.best_score:.3f}; {ranked})")
                    if search.in_gallery:
                        print("  note: this photo is one of the gallery's images (or a copy): it matches itself, "
                              "not recognition")
    for failure in failures:
        print(f"facegraph predict: error: {failure.error}", file=sys.stderr)
    return 2 if failures else 0
