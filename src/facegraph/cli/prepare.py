"""`facegraph prepare`: turn IMDb-Face, a per-identity photo folder (LFW) or CelebA into a prepared dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from facegraph.data.build import PrepareResult, Selection, default_workers, parse_split
from facegraph.data.sources.celeba import prepare_celeba
from facegraph.data.sources.download import HttpOptions
from facegraph.data.sources.folder import prepare_folder
from facegraph.data.sources.imdb_face import DOWNLOAD_WORKERS, PAPER_ASPECT_RATIO, prepare_imdb_face, prepare_imdb_face_lists
from facegraph.data.sources.lfw import LFW_CENTER_CROP, LFW_MIN_IMAGES, prepare_lfw
from facegraph.errors import ConfigError

EXAMPLES = """examples:
  facegraph prepare lfw --out data/lfw10 --image-size 64
  facegraph prepare folder $FACEGRAPH_DATA/lfw/lfw-deepfunneled --min-images 10 --center-crop 0.45 \\
      --attributes-lfw $FACEGRAPH_DATA/lfw --out data/lfw10
  facegraph prepare celeba $FACEGRAPH_DATA/celeba-subset --out data/celeba
  facegraph prepare imdb-face --csv IMDb-Face.csv --annotations manual_annotations.csv --out data/imdb-face
  facegraph prepare imdb-face --split-lists imdb-face/splits --images /path/to/their/images --out data/imdb-face-authors
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1]")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the prepared dataset folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (atomically)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_selection(parser: argparse.ArgumentParser, *, min_images: int, per_identity: int | None, workers: int, image_size: int = 128) -> None:
    group = parser.add_argument_group("selection")
    group.add_argument("--image-size", type=_positive_int, default=image_size, help="side of the square images in pixels (default %(default)s)")
    group.add_argument("--min-images", type=_positive_int, default=min_images, help="keep identities with at least this many usable images (default %(default)s)")
    group.add_argument("--per-identity", type=_positive_int, default=per_identity, help="sample this many images per identity, seeded (default: %(default)s)")
    group.add_argument("--max-identities", type=_positive_int, help="stop after this many identities (a seeded subset, for quick runs)")
    group.add_argument("--split", default="80/20", help="per-identity split, train/test or train/val/test (default %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="seed of sampling and split, recorded in prepare.json (default %(default)s)")
    group.add_argument("--workers", type=_positive_int, default=workers, help="parallel workers (default %(default)s)")


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        image_size=args.image_size,
        min_images=args.min_images,
        per_identity=args.per_identity,
        max_identities=args.max_identities,
        split=parse_split(args.split),
        seed=args.seed,
        workers=args.workers,
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="prepare a face dataset (IMDb-Face, a folder per identity such as LFW, CelebA)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    folder = sources.add_parser("folder", help="one sub-folder of photos per identity (JPEG/PNG/PGM)")
    folder.add_argument("src", type=Path, help="folder with one sub-folder per identity")
    folder.add_argument("--center-crop", type=_fraction, default=1.0, help="keep the central square of this fraction of the shorter side (LFW: 0.45)")
    folder.add_argument("--annotations", type=Path, help="coded per-identity attributes, paper format (Label,Skin,...,Name)")
    folder.add_argument("--attributes-lfw", type=Path, metavar="DIR", help="folder with the LFW gender lists (and the derived table)")
    _add_common(folder)
    _add_selection(folder, min_images=1, per_identity=None, workers=default_workers())

    lfw = sources.add_parser("lfw", help="LFW deep-funneled ($FACEGRAPH_DATA/lfw, or downloaded) with gender attributes")
    lfw.add_argument("--lfw-dir", type=Path, help="the lfw-deepfunneled folder (default: $FACEGRAPH_DATA/lfw/lfw-deepfunneled, else download)")
    lfw.add_argument("--attributes-lfw", type=Path, metavar="DIR", help="folder with the LFW gender lists (default: beside --lfw-dir)")
    lfw.add_argument("--cache-dir", type=Path, help="where to download LFW if needed (default ~/.cache/facegraph/lfw)")
    lfw.add_argument("--center-crop", type=_fraction, default=LFW_CENTER_CROP, help="default %(default)s")
    _add_common(lfw)
    _add_selection(lfw, min_images=LFW_MIN_IMAGES, per_identity=None, workers=default_workers())

    celeba = sources.add_parser("celeba", help="CelebA: images + identity_CelebA.txt + list_attr_celeba.txt")
    celeba.add_argument("root", type=Path, help="folder with identity_CelebA.txt, list_attr_celeba.txt and the images")
    celeba.add_argument("--identity-file", type=Path, help="default ROOT/identity_CelebA.txt")
    celeba.add_argument("--attribute-file", type=Path, help="default ROOT/list_attr_celeba.txt")
    celeba.add_argument("--images", type=Path, help="image folder, flat or per identity (default ROOT/img_align_celeba or ROOT/faces)")
    celeba.add_argument("--center-crop", type=_fraction, default=1.0, help="default %(default)s")
    _add_common(celeba)
    _add_selection(celeba, min_images=1, per_identity=None, workers=default_workers())

    imdb = sources.add_parser("imdb-face", help="IMDb-Face from the official index (downloads), or the authors' split lists")
    given = imdb.add_mutually_exclusive_group(required=True)
    given.add_argument("--csv", type=Path, help="the official IMDb-Face.csv (name,index,image,rect,height width,url)")
    given.add_argument("--split-lists", type=Path, metavar="DIR", help="the authors' {train,val,test}_labels.csv (use with --images)")
    imdb.add_argument("--images", type=Path, help="with --split-lists: the folder holding images/<split>/<n>.jpg")
    imdb.add_argument("--annotations", type=Path, help="the paper's manual_annotations.csv")
    imdb.add_argument("--only-annotated", action="store_true", help="with --csv: only identities in --annotations")
    imdb.add_argument("--aspect-ratio", type=float, nargs=2, default=PAPER_ASPECT_RATIO, metavar=("LOW", "HIGH"), help="keep boxes with width/height in this range (default 0.75 1.25)")
    imdb.add_argument("--download-dir", type=Path, help="downloaded photos, reused by later runs (default OUT-downloads)")
    imdb.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default %(default)s)")
    imdb.add_argument("--retries", type=int, default=3, help="retries after a failed request (default %(default)s)")
    imdb.add_argument("--backoff", type=float, default=0.5, help="seconds before the first retry, doubled each time (default %(default)s)")
    _add_common(imdb)
    _add_selection(imdb, min_images=100, per_identity=100, workers=DOWNLOAD_WORKERS)


def _prepare(args: argparse.Namespace, progress: bool) -> PrepareResult:
    common = {"overwrite": args.overwrite, "progress": progress}
    if args.source == "folder":
        return prepare_folder(args.src, args.out, _selection(args), center_crop=args.center_crop, annotations=args.annotations, lfw_attributes=args.attributes_lfw, **common)
    if args.source == "lfw":
        return prepare_lfw(args.out, _selection(args), lfw_dir=args.lfw_dir, attributes_dir=args.attributes_lfw, cache_dir=args.cache_dir, center_crop=args.center_crop, **common)
    if args.source == "celeba":
        return prepare_celeba(
            args.root, args.out, _selection(args), identity_file=args.identity_file, attribute_file=args.attribute_file, images_dir=args.images, center_crop=args.center_crop, **common
        )
    if args.split_lists is not None:
        if args.images is None:
            raise ConfigError("--split-lists needs --images, the folder that holds images/<split>/<n>.jpg")
        return prepare_imdb_face_lists(args.split_lists, args.images, args.out, image_size=args.image_size, annotations=args.annotations, workers=args.workers, **common)
    http = HttpOptions(timeout=args.timeout, retries=args.retries, backoff=args.backoff)
    return prepare_imdb_face(
        args.csv,
        args.out,
        _selection(args),
        aspect_ratio=tuple(args.aspect_ratio),
        download_dir=args.download_dir,
        http=http,
        annotations=args.annotations,
        only_annotated=args.only_annotated,
        **common,
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {number}" for reason, number in counts.items()) or "none"


def run(args: argparse.Namespace) -> int:
    progress = not args.no_progress and sys.stderr.isatty()
    with logging_redirect_tqdm():
        result = _prepare(args, progress)
    print(f"prepared {result.identities} identities, {result.images} images ({_counts(result.split_counts)}) in {result.root}")
    print(f"dropped images: {_counts(result.dropped_images)}")
    print(f"dropped identities: {_counts(result.dropped_identities)}")
    if result.attribute_coverage:
        known = ", ".join(f"{feature} {number}/{result.identities}" for feature, number in result.attribute_coverage.items())
        print(f"identities with a known attribute: {known}")
    for anomaly in result.anomalies:
        print(f"anomaly: {anomaly}")
    return 0
