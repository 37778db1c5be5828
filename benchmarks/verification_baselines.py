"""Training-free verification baselines on LFW pairs, measured exactly as `facegraph verify` measures a run.

    python benchmarks/verification_baselines.py --pairs $FACEGRAPH_DATA/lfw/pairs.txt \\
        --images $FACEGRAPH_DATA/lfw/lfw-deepfunneled --train-data data/celeba [--image-size 64] [--center-crop 0.45]

Every pair image is cut and normalised like a prepared dataset's photo (centre crop, resize); two baselines are
scored with the same 10-fold protocol (threshold on 9 folds, accuracy on the 10th), ROC AUC and TAR at FAR:
cosine on raw pixels (each image minus its mean: Pearson correlation) and PCA eigenfaces (whitened) fitted on the
training photos of `--train-data` (a prepared dataset, e.g. the CelebA subset a verification run is trained on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facegraph.data import load_prepared
from facegraph.data.images import load_image_for_inference
from facegraph.recognition import read_lfw_pairs, split_available, tar_at_far, verification_protocol
from facegraph.recognition.baselines import fit_pca, raw_pixel_embeddings


def load_images(paths: list[Path], preprocessing: dict) -> np.ndarray:
    return np.stack([load_image_for_inference(path, preprocessing).numpy() for path in paths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--train-data", type=Path, required=True, help="prepared dataset whose train split fits PCA")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--center-crop", type=float, default=0.45, help="crop of the pair photos")
    parser.add_argument("--components", type=int, default=128)
    parser.add_argument("--max-train", type=int, default=3000, help="training photos used to fit PCA (seeded draw)")
    args = parser.parse_args()

    pairs, missing = split_available(read_lfw_pairs(args.pairs), args.images)
    distinct = sorted({p for pair in pairs for p in (pair.first, pair.second)})
    row_of = {path: row for row, path in enumerate(distinct)}
    train = load_prepared(args.train_data)
    preprocessing = {**train.preprocessing(), "image_size": args.image_size, "center_crop": args.center_crop}
    images = load_images([args.images / p for p in distinct], preprocessing)
    indices = train.split_indices("train")
    chosen = np.random.default_rng(0).permutation(indices)[: args.max_train]
    train_images = load_images([Path(train.root) / train.samples[i].path for i in chosen],
                               {**train.preprocessing(), "image_size": args.image_size, "center_crop": 1.0})
    first = np.array([row_of[p.first] for p in pairs])
    second = np.array([row_of[p.second] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"{len(pairs)} pairs used ({len(missing)} skipped: an image is missing), {len(distinct)} images at "
          f"{args.image_size} px, crop {args.center_crop}; PCA fitted on {len(chosen)} photos of {args.train_data}")
    print("| baseline | accuracy (%, mean +- std over 10 folds) | ROC AUC | TAR at FAR 1e-2 | TAR at FAR 1e-3 |")
    print("|---|---|---|---|---|")
    pca = fit_pca(train_images, args.components, whiten=True)
    for name, embeddings in (("cosine on raw pixels", raw_pixel_embeddings(images)),
                             (f"PCA eigenfaces ({args.components}, whitened)", pca.project(images))):
        scores = np.einsum("ij,ij->i", embeddings[first].astype(np.float64), embeddings[second].astype(np.float64))
        result = verification_protocol(scores, same, folds)
        tars = [tar_at_far(scores, same, far) for far in (1e-2, 1e-3)]
        print(f"| {name} | {100 * result.mean_accuracy:.2f} +- {100 * result.std_accuracy:.2f} | {result.auc:.4f} | "
              + " | ".join(f"{100 * t.tar:.2f} ({t.false_accepts}/{t.mismatched_pairs})" for t in tars) + " |")


if __name__ == "__main__":
    main()
