"""Training-free verification baselines on LFW pairs, measured exactly as `facegraph verify` measures a run.

    python benchmarks/verification_baselines.py --pairs $FACEGRAPH_DATA/lfw/pairs.txt \\
        --images $FACEGRAPH_DATA/lfw/lfw-deepfunneled --train-data data/celeba [--image-size 64] [--center-crop 0.45 0.5 ...]

Every pair image is cut and normalised like a prepared dataset's photo (centre crop, resize); two baselines are
scored with the same 10-fold protocol (threshold on 9 folds, accuracy on the 10th), ROC AUC and TAR at FAR:
cosine on raw pixels (each image minus its mean: Pearson correlation) and PCA eigenfaces (whitened) fitted on the
training photos of `--train-data` (a prepared dataset, e.g. the CelebA subset a verification run is trained on).
Several `--center-crop` values are chosen per fold on the other nine folds, as `facegraph verify` chooses them.
`--compare RUN...` adds each run's paired difference to eigenfaces over the same folds (from the run's
RUN/verify/<pairs file stem>/summary.json, written by `facegraph verify` or `table2 --verify-pairs` on the same pairs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facegraph.analysis.statistics import paired_difference
from facegraph.data import load_prepared
from facegraph.data.images import load_faces_for_inference
from facegraph.recognition import (pair_similarities, read_lfw_pairs, split_available, tar_at_far,
                                   verification_protocol)
from facegraph.recognition.baselines import fit_pca, raw_pixel_embeddings
from facegraph.rundir import read_json


def load_images(paths: list[Path], preprocessing: dict, crops: list[float]) -> np.ndarray:
    """The photos at each centre crop: (crops, N, 3, H, W), each photo read once."""
    size = int(preprocessing["image_size"])
    images = np.empty((len(crops), len(paths), 3, size, size), np.float32)
    for row, path in enumerate(paths):
        for crop, face in enumerate(load_faces_for_inference(path, preprocessing, crops)):
            images[crop, row] = face.numpy()
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--train-data", type=Path, required=True, help="prepared dataset whose train split fits PCA")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--center-crop", type=float, nargs="+", default=[0.45],
                        help="crop of the pair photos; several: chosen per fold on the other folds")
    parser.add_argument("--components", type=int, default=128)
    parser.add_argument("--compare", nargs="+", type=Path, default=[], metavar="RUN",
                        help="runs verified on the same pairs: their paired difference to eigenfaces over the folds")
    parser.add_argument("--max-train", type=int, default=3000, help="training photos used to fit PCA (seeded draw)")
    args = parser.parse_args()

    pairs, missing = split_available(read_lfw_pairs(args.pairs), args.images)
    distinct = sorted({p for pair in pairs for p in (pair.first, pair.second)})
    row_of = {path: row for row, path in enumerate(distinct)}
    train = load_prepared(args.train_data)
    images_at = load_images([args.images / p for p in distinct], {**train.preprocessing(),
                            "image_size": args.image_size}, args.center_crop)
    indices = train.split_indices("train")
    chosen = np.random.default_rng(0).permutation(indices)[: args.max_train]
    train_images = load_images([Path(train.root) / train.samples[i].path for i in chosen],
                               {**train.preprocessing(), "image_size": args.image_size}, [1.0])[0]
    first = np.array([row_of[p.first] for p in pairs])
    second = np.array([row_of[p.second] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"{len(pairs)} pairs used ({len(missing)} skipped: an image is missing), {len(distinct)} images at "
          f"{args.image_size} px, crop {' / '.join(f'{c:g}' for c in args.center_crop)}; PCA fitted on {len(chosen)} photos of {args.train_data}")
    print("| baseline | accuracy (%, mean +- std over 10 folds) | ROC AUC | TAR at FAR 1e-2 | TAR at FAR 1e-3 | "
          "crop per fold |")
    print("|---|---|---|---|---|---|")
    pca = fit_pca(train_images, args.components, whiten=True)
    fold_accuracies = {}
    for name, embed in (("cosine on raw pixels", raw_pixel_embeddings),
                        (f"PCA eigenfaces ({args.components}, whitened)", pca.project)):
        scores = np.stack([pair_similarities(embed(images), first, second) for images in images_at])
        result = verification_protocol(scores, same, folds)
        tars = [tar_at_far(result.scores, same, far) for far in (1e-2, 1e-3)]
        crops = " ".join(f"{args.center_crop[c]:g}" for c in result.fold_candidates)
        fold_accuracies[name] = dict(zip(result.folds.tolist(), result.fold_accuracies.tolist()))
        print(f"| {name} | {100 * result.mean_accuracy:.2f} +- {100 * result.std_accuracy:.2f} | {result.auc:.4f} | "
              + " | ".join(f"{100 * t.tar:.2f} ({t.false_accepts}/{t.mismatched_pairs})" for t in tars)
              + f" | {crops} |")
    if args.compare:
        compare(args.compare, args.pairs.stem, len(pairs), fold_accuracies[f"PCA eigenfaces ({args.components}, whitened)"])


def compare(runs: list[Path], pairs_name: str, pairs_used: int, eigenfaces: dict[int, float]) -> None:
    """Each run's verification accuracy minus eigenfaces', fold by fold: the t interval over the folds, and the same
    corrected for overlap (Nadeau and Bengio; analysis.statistics.paired_difference), since each fold's threshold and
    crop were chosen on the other folds, which every other fold shares."""
    print("\n| run | embedding | accuracy (%) | minus eigenfaces (points, mean +- std over folds, 95 % interval) | "
          "95 % interval corrected for the shared threshold folds |")
    print("|---|---|---|---|---|")
    for run in runs:
        summary = read_json(run / "verify" / pairs_name / "summary.json")
        if summary["pairs_used"] != pairs_used:
            raise SystemExit(f"{run} was verified on {summary['pairs_used']} pairs, the baselines on {pairs_used}")
        for variant, result in summary["results"].items():
            folds = result["folds"]
            baseline = [eigenfaces[f] for f in folds]
            difference = paired_difference(result["fold_accuracies"], baseline)
            corrected = paired_difference(result["fold_accuracies"], baseline, test_train_ratio=1 / (len(folds) - 1))
            print(f"| {run} | {variant} | {100 * result['accuracy_mean']:.2f} | "
                  f"{difference.describe(scale=100, sample='fold')} | "
                  f"{100 * corrected.low:+.2f} to {100 * corrected.high:+.2f} |")


if __name__ == "__main__":
    main()
