"""`facegraph prepare`: turn IMDb-Face, a per-identity photo folder (LFW) or CelebA into a prepared dataset."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from facegraph.data.build import PrepareResult, Selection, default_workers, parse_split
from facegraph.data.sources.celeba import prepare_celeba
from facegraph.data.sources.download import HttpOptions
from facegraph.data.sources.folder import prepare_folder
from facegraph.data.sources.imdb_face import DOWNLOAD_WORKERS, PAPER_ASPECT_RATIO, prepare_imdb_face, prepare_imdb_face_lists
from facegraph.data.sources.lfw import LFW_MIN_IMAGES, LFW_VARIANTS, prepare_lfw
from facegraph.cli import SUBCOMMANDS, checked_number, crop_fraction, positive_float, positive_int, verbose_parent
from facegraph.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  facegraph prepare lfw --out data/lfw10 --image-size 64
  facegraph prepare folder $FACEGRAPH_DATA/lfw/lfw-deepfunneled --min-images 10 --center-crop 0.45 \\
      --attributes-lfw $FACEGRAPH_DATA/lfw --out data/lfw10
  facegraph prepare celeba $FACEGRAPH_DATA/celeba-subset --out data/celeba
  facegraph prepare imdb-face --csv IMDb-Face.csv --annotations manual_annotations.csv --out data/imdb-face
  facegraph prepare imdb-face --split-lists imdb-face/splits --images /path/to/their/images --out data/imdb-face-authors
"""

SOURCE_EXAMPLES = {
    "folder": """examples:
  facegraph prepare folder photos/ --out data/mine                     # every person, whole photo, 80/20
  facegraph prepare folder $FACEGRAPH_DATA/lfw/lfw-deepfunneled --min-images 10 --center-crop 0.45 \\
      --attributes-lfw $FACEGRAPH_DATA/lfw --out data/lfw10 --image-size 64
  facegraph prepare folder photos/ --annotations people.csv --split 80/10/10 --out data/mine
""",
    "lfw": """examples:
  facegraph prepare lfw --out data/lfw10 --image-size 64              # $FACEGRAPH_DATA/lfw, else downloaded
  facegraph prepare lfw --lfw-dir ~/lfw_funneled --out data/lfw10      # a folder you have (crop of its variant)
  facegraph prepare lfw --cache-dir /big/disk/lfw --max-identities 20 --out data/lfw-quick
""",
    "celeba": """examples:
  facegraph prepare celeba $FACEGRAPH_DATA/celeba-subset --out data/celeba
  facegraph prepare celeba ~/celeba --images ~/celeba/img_align_celeba --min-images 20 --per-identity 20 --out data/celeba20
""",
    "imdb-face": """examples:
  facegraph prepare imdb-face --csv IMDb-Face.csv --annotations manual_annotations.csv --out data/imdb-face
  facegraph prepare imdb-face --csv IMDb-Face.csv --max-identities 50 --workers 8 --out data/imdb-quick
  facegraph prepare imdb-face --split-lists imdb-face/splits --images /path/to/their/images --out data/imdb-face-authors
""",
}


def _non_negative_int(text: str) -> int:
    return int(checked_number(int, text, 0, None))


def _seed(text: str) -> int:
    return int(checked_number(int, text, 0, 2**63 - 1))


def _image_size(text: str) -> int:
    return int(checked_number(int, text, 8, 4096))


def _non_negative_float(text: str) -> float:
    return float(checked_number(float, text, 0, None))


def _split(text: str) -> dict[str, float]:
    try:
        return parse_split(text)
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the prepared dataset folder to create (required); must not be, contain or lie inside an input")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (atomically; default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar when stderr is a terminal)")


def _add_selection(parser: argparse.ArgumentParser, *, min_images: int, per_identity: int | None, workers: int, image_size: int = 128) -> None:
    group = parser.add_argument_group("selection")
    group.add_argument("--image-size", type=_image_size, default=image_size, metavar="PX", help="side of the square images in pixels, 8-4096 (default %(default)s)")
    group.add_argument("--min-images", type=positive_int, default=min_images, metavar="N", help="keep identities with at least this many usable images (default %(default)s)")
    group.add_argument("--per-identity", type=positive_int, default=per_identity, metavar="N", help="sample this many images per identity, seeded (default: %(default)s)")
    group.add_argument("--max-identities", type=positive_int, metavar="N", help="stop after this many identities, a seeded subset for quick runs (default: all)")
    group.add_argument("--split", type=_split, default="80/20", metavar="PCT", help="per-identity split in percent summing to 100: train/test or train/val/test (default %(default)s)")
    group.add_argument("--seed", type=_seed, default=0, help="seed of sampling and split, >= 0, recorded in prepare.json (default %(default)s)")
    group.add_argument("--workers", type=positive_int, default=workers, metavar="N", help="parallel workers (default %(default)s)")


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        image_size=args.image_size,
        min_images=args.min_images,
        per_identity=args.per_identity,
        max_identities=args.max_identities,
        split=args.split,
        seed=args.seed,
        workers=args.workers,
    )


def _source_parser(sources: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    return sources.add_parser(name, help=help_text, description=help_text, epilog=SOURCE_EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter, parents=[verbose_parent()])


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help=SUBCOMMANDS["prepare"],
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    parser.set_defaults(run=run)
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    folder = _source_parser(sources, "folder", "one sub-folder of photos per identity (JPEG/PNG/PGM/PPM/BMP)")
    folder.add_argument("src", type=Path, help="folder with one sub-folder per identity")
    folder.add_argument("--center-crop", type=crop_fraction, default=1.0, metavar="F",
                        help="keep the central square of this fraction of the shorter side, 0.05-1 (default %(default)s; LFW deep-funneled: 0.45)")
    folder.add_argument("--annotations", type=Path, metavar="CSV", help="coded per-identity attributes, paper format Label,Skin,...,Name (default: none)")
    folder.add_argument("--attributes-lfw", type=Path, metavar="DIR", help="folder with the LFW gender lists and the derived table (default: none)")
    _add_common(folder)
    _add_selection(folder, min_images=1, per_identity=None, workers=default_workers())

    lfw = _source_parser(sources, "lfw", "LFW ($FACEGRAPH_DATA/lfw/lfw-deepfunneled, else downloaded) with gender attributes")
    lfw.add_argument("--lfw-dir", type=Path, metavar="DIR", help="an LFW image folder (default: $FACEGRAPH_DATA/lfw/lfw-deepfunneled, else download)")
    lfw.add_argument("--attributes-lfw", type=Path, metavar="DIR", help="folder with the LFW gender lists (default: beside the image folder, if there)")
    lfw.add_argument("--cache-dir", type=Path, metavar="DIR", help="where to download LFW if needed (default ~/.cache/facegraph/lfw)")
    crops = ", ".join(f"{v.name} {v.center_crop}" for v in LFW_VARIANTS.values())
    lfw.add_argument("--center-crop", type=crop_fraction, default=None, metavar="F", help=f"central square kept, 0.05-1 (default: the variant's: {crops})")
    _add_common(lfw)
    _add_selection(lfw, min_images=LFW_MIN_IMAGES, per_identity=None, workers=default_workers())

    celeba = _source_parser(sources, "celeba", "CelebA: images + identity_CelebA.txt + list_attr_celeba.txt")
    celeba.add_argument("root", type=Path, help="folder with identity_CelebA.txt, list_attr_celeba.txt and the images")
    celeba.add_argument("--identity-file", type=Path, metavar="FILE", help="default ROOT/identity_CelebA.txt")
    celeba.add_argument("--attribute-file", type=Path, metavar="FILE", help="default ROOT/list_attr_celeba.txt (no attributes if absent)")
    celeba.add_argument("--images", type=Path, metavar="DIR", help="image folder, flat or per identity (default ROOT/img_align_celeba or ROOT/faces)")
    celeba.add_argument("--center-crop", type=crop_fraction, default=1.0, metavar="F", help="central square kept, 0.05-1 (default %(default)s)")
    _add_common(celeba)
    _add_selection(celeba, min_images=1, per_identity=None, workers=default_workers())

    imdb = _source_parser(sources, "imdb-face", "IMDb-Face from the official index (downloads), or the authors' split lists")
    given = imdb.add_mutually_exclusive_group(required=True)
    given.add_argument("--csv", type=Path, help="the official IMDb-Face.csv (name,index,image,rect,height width,url), UTF-8 (this or --split-lists is required)")
    given.add_argument("--split-lists", type=Path, metavar="DIR", help="the authors' {train,val,test}_labels.csv, with --images (this or --csv is required)")
    imdb.add_argument("--images", type=Path, metavar="DIR", help="with --split-lists: the folder holding images/<split>/<n>.jpg (required there)")
    imdb.add_argument("--annotations", type=Path, metavar="CSV", help="the paper's manual_annotations.csv (default: none)")
    imdb.add_argument("--only-annotated", action="store_true", help="with --csv: only identities in --annotations (default: all)")
    imdb.add_argument("--aspect-ratio", type=positive_float, nargs=2, default=PAPER_ASPECT_RATIO, metavar=("LOW", "HIGH"),
                      help="keep boxes with width/height in this range (default 0.75 1.25)")
    imdb.add_argument("--download-dir", type=Path, metavar="DIR", help="downloaded photos, reused by later runs (default OUT-downloads)")
    imdb.add_argument("--timeout", type=positive_float, default=10.0, metavar="S", help="seconds per request, > 0 (default %(default)s)")
    imdb.add_argument("--retries", type=_non_negative_int, default=3, metavar="N", help="retries after a failed request, >= 0 (default %(default)s)")
    imdb.add_argument("--backoff", type=_non_negative_float, default=0.5, metavar="S", help="seconds before the first retry, doubled each time, >= 0 (default %(default)s)")
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
        if args.split != parse_split("80/20") or args.per_identity != 100 or args.min_images != 100 or args.max_identities is not None:
            logger.warning("--split-lists keeps the authors' split and every listed image: --split/--per-identity/--min-images/--max-identities are ignored")
        return prepare_imdb_face_lists(args.split_lists, args.images, args.out, image_size=args.image_size, annotations=args.annotations, workers=args.workers, **common)
    low, high = args.aspect_ratio
    if low > high:
        raise ConfigError(f"--aspect-ratio {low:g} {high:g}: LOW must not exceed HIGH")
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
