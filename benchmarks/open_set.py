"""Open-set identification on LFW: people in a gallery are found, people absent from it are answered "unknown".

    python benchmarks/open_set.py --lfw $FACEGRAPH_DATA/lfw/lfw-deepfunneled --train-data data/celeba64 \\
        --runs celeba-cosface/cosface-seed0 celeba-cosface/cosface-aig-t0.5-seed0 [--enrol 1] [--center-crop 0.45]

The gallery holds everyone with >= 10 photos (158 people in ../shared/data), `--enrol` photos each (the first by file
name); their other photos are the mated probes; everyone with fewer than 5 photos (absent from the gallery) gives the
non-mated probes. The runs should be trained on other people (e.g. the CelebA subset). As `facegraph predict
--gallery` does, the threshold is calibrated at a false-accept rate on the gallery's own impostor pairs; the table
then shows what that threshold does to strangers (the false-alarm rate measured on non-mated probes) beside the
detection-and-identification rate (DIR) of mated probes, and DIR at false-alarm rates chosen on the non-mated probes
themselves (an oracle threshold, as face-search evaluations report). Training-free baselines (raw pixels, PCA
eigenfaces fitted on `--train-data`) are measured the same way on the same photos.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from facegraph.data import load_prepared
from facegraph.data.images import load_image_for_inference
from facegraph.engine.trained import load_trained
from facegraph.recognition import Gallery, calibrate_threshold, fit_pca, open_set_rates, raw_pixel_embeddings
from facegraph.recognition.embedding import embed_images, image_files, run_preprocessing
from facegraph.recognition.protocol import threshold_at_far
from facegraph.recognition.run_gallery import impostor_scores

GALLERY_MIN_PHOTOS = 10
STRANGER_MAX_PHOTOS = 4


def lfw_people(folder: Path) -> dict[str, list[Path]]:
    return {person.name: image_files(person) for person in sorted(p for p in folder.iterdir() if p.is_dir())}


def evaluate(name: str, embedding_of: dict[Path, np.ndarray], enrolled: list[tuple[str, Path]],
             mated: list[tuple[str, Path]], strangers: list[Path], fars: list[float], gmacs: str) -> str:
    gallery_people = [person for person, _ in enrolled]
    gallery_rows = np.stack([embedding_of[path] for _, path in enrolled])
    gallery = Gallery(gallery_rows, gallery_people)
    mated_rows = np.stack([embedding_of[path] for _, path in mated])
    mated_people = [person for person, _ in mated]
    stranger_rows = np.stack([embedding_of[path] for path in strangers])
    cells = []
    impostors = impostor_scores(gallery_rows, gallery_people)
    for far in fars:
        rates = open_set_rates(gallery, mated_rows, mated_people, stranger_rows, calibrate_threshold(impostors, far))
        cells.append(f"{100 * rates.detection_identification_rate:.2f} / {100 * rates.false_alarm_rate:.2f}")
    stranger_best = gallery.person_scores(stranger_rows).max(dim=1).values.numpy()
    oracle = []
    for rate in (0.1, 0.01):
        threshold = threshold_at_far(stranger_best, rate)[0]
        oracle.append(open_set_rates(gallery, mated_rows, mated_people, stranger_rows, threshold))
    return (f"| {name} | {gmacs} | {100 * oracle[0].rank1:.2f} | " + " | ".join(cells) + " | "
            + " | ".join(f"{100 * r.detection_identification_rate:.2f}" for r in oracle) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, required=True, help="the LFW folder (one sub-folder per person)")
    parser.add_argument("--runs", nargs="*", default=[], help="run directories to measure")
    parser.add_argument("--train-data", type=Path, help="prepared dataset whose train split fits the PCA baseline")
    parser.add_argument("--enrol", type=int, default=1, help="gallery photos per person")
    parser.add_argument("--center-crop", type=float, default=0.45, help="crop of the LFW photos")
    parser.add_argument("--image-size", type=int, default=64, help="baselines' image size")
    parser.add_argument("--components", type=int, default=128, help="PCA components (whitened)")
    parser.add_argument("--far", type=float, nargs="+", default=[1e-2, 1e-3],
                        help="false-accept rates the threshold is calibrated at (gallery impostor pairs)")
    args = parser.parse_args()

    people = lfw_people(args.lfw)
    enrolled, mated, strangers = [], [], []
    for person, photos in people.items():
        if len(photos) >= GALLERY_MIN_PHOTOS:
            enrolled += [(person, path) for path in photos[: args.enrol]]
            mated += [(person, path) for path in photos[args.enrol:]]
        elif len(photos) <= STRANGER_MAX_PHOTOS:
            strangers += photos
    every_photo = [path for _, path in enrolled + mated] + strangers
    print(f"gallery: {len({p for p, _ in enrolled})} people x {args.enrol} photo(s); {len(mated)} mated probes; "
          f"{len(strangers)} non-mated probes of {sum(1 for v in people.values() if len(v) <= STRANGER_MAX_PHOTOS)} "
          f"people absent from the gallery; LFW crop {args.center_crop}")
    far_heads = " | ".join(f"DIR / false alarms at FAR {far:g} (%)" for far in args.far)
    lines = [f"| method | GMACs / image | rank-1 (%) | {far_heads} | DIR at 10 % false alarms | DIR at 1 % |",
             "|---|---|---|" + "---|" * len(args.far) + "---|---|"]
    if args.train_data is not None:
        started = time.perf_counter()
        train = load_prepared(args.train_data)
        base = {**train.preprocessing(), "image_size": args.image_size}
        images = np.stack([load_image_for_inference(path, {**base, "center_crop": args.center_crop}).numpy()
                           for path in every_photo])
        chosen = np.random.default_rng(0).permutation(train.split_indices("train"))[:3000]
        train_images = np.stack([load_image_for_inference(Path(train.root) / train.samples[i].path,
                                                          {**base, "center_crop": 1.0}).numpy() for i in chosen])
        pca = fit_pca(train_images, args.components, whiten=True)
        for name, rows in (("cosine on raw pixels", raw_pixel_embeddings(images)),
                           (f"PCA eigenfaces ({args.components}, whitened)", pca.project(images))):
            lines.append(evaluate(name, dict(zip(every_photo, rows)), enrolled, mated, strangers, args.far, "n/a"))
        print(f"baselines: {time.perf_counter() - started:.0f} s")
    for run in args.runs:
        started = time.perf_counter()
        trained = load_trained(run)
        preprocessing = run_preprocessing(trained, prepared=False, center_crop=args.center_crop)
        embedded = embed_images(trained, every_photo, preprocessing=preprocessing, batch_size=256,
                                names=[str(p) for p in every_photo])
        if embedded.failures:
            raise SystemExit(f"{run}: {len(embedded.failures)} photos unreadable, e.g. {embedded.failures[0]}")
        gmacs = f"{embedded.gmacs.mean():.4f} ({embedded.gmacs.mean() / embedded.dense_gmacs:.2f}x dense)"
        lines.append(evaluate(run, dict(zip(every_photo, embedded.embeddings)), enrolled, mated, strangers, args.far,
                              gmacs))
        print(f"{run}: {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
