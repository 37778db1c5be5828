"""CelebA: images + ``identity_CelebA.txt`` + ``list_attr_celeba.txt`` in their official formats.

Images are found flat (``img_align_celeba/<image>``, the official layout) or per identity
(``<images>/<identity>/<image>``, the layout of the shared face-cropped subset).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facegraph.data.attributes import UNKNOWN, IdentityAttributes, majority_per_identity
from facegraph.data.build import Candidate, PrepareResult, ScannedSource, Selection, build_prepared, check_output_apart
from facegraph.data.images import FaceCrop, cut_face, open_image
from facegraph.data.textfile import read_lines
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

IDENTITY_FILE = "identity_CelebA.txt"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
IMAGE_FOLDERS = ("img_align_celeba", "faces")


# CelebA attribute names the importer reads.
CELEBA_USED_ATTRIBUTES = ("Male", "Mustache", "No_Beard", "Goatee", "Eyeglasses", "Young")


def read_celeba_attribute_file(path: str | Path) -> dict[str, dict[str, bool]]:
    """Per-image CelebA attributes from ``list_attr_celeba.txt`` (count line, names line, ``<image> <1|-1>...``)."""
    path = Path(path)
    lines = read_lines(path, "CelebA attribute file")
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}, line 1: {lines[0]!r} is not the image count") from None
    names = lines[1].split()
    missing = [name for name in CELEBA_USED_ATTRIBUTES if name not in names]
    if missing:
        raise DataError(f"{path}, line 2: attribute(s) {', '.join(missing)} missing from the header")
    flags: dict[str, dict[str, bool]] = {}
    for line_number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise DataError(f"{path}, line {line_number}: {len(fields) - 1} values, expected {len(names)}")
        image, values = fields[0], fields[1:]
        for name, value in zip(names, values):
            if value not in ("1", "-1"):
                raise DataError(f"{path}, line {line_number}, column {name}: value {value!r} is neither 1 nor -1")
        if image in flags:
            raise DataError(f"{path}, line {line_number}: image {image} is listed twice")
        flags[image] = {name: value == "1" for name, value in zip(names, values)}
    if len(flags) != declared:
        logger.warning("%s declares %d images but lists %d", path, declared, len(flags))
    return flags


def celeba_facial_hair(flags: Mapping[str, bool]) -> str:
    """Table I's facial hair from CelebA's Goatee, Mustache and No_Beard flags.

    CelebA sets No_Beard = -1 for any facial hair, a moustache alone included: No_Beard = -1 with Mustache and without
    Goatee cannot tell a moustache from a beard and moustache, so it is unknown (73 of the shared subset's 6,028
    images; a look at a dozen of them found both kinds). A goatee is a beard.
    """
    moustache, goatee, some_hair = flags["Mustache"], flags["Goatee"], not flags["No_Beard"]
    if goatee:
        return "both" if moustache else "beard"
    if moustache:
        return UNKNOWN if some_hair else "moustache"
    return "beard" if some_hair else "none"


def celeba_image_labels(flags: Mapping[str, bool]) -> IdentityAttributes:
    """Feature labels of one CelebA image: Male -> gender; Goatee / Mustache / No_Beard -> facial_hair
    (celeba_facial_hair); Eyeglasses; Young."""
    return {
        "gender": "male" if flags["Male"] else "female",
        "facial_hair": celeba_facial_hair(flags),
        "eyeglasses": "yes" if flags["Eyeglasses"] else "no",
        "young": "yes" if flags["Young"] else "no",
    }


def _default_images_dir(root: Path) -> Path:
    for name in IMAGE_FOLDERS:
        if (root / name).is_dir():
            return root / name
    return root


def scan_celeba(
    root: str | Path,
    *,
    identity_file: str | Path | None = None,
    attribute_file: str | Path | None = None,
    images_dir: str | Path | None = None,
    center_crop: float = 1.0,
) -> ScannedSource:
    """Candidates from the identity file, attributes (per-identity majority) from the attribute file if present."""
    root = Path(root)
    identity_path = Path(identity_file) if identity_file else root / IDENTITY_FILE
    attribute_path = Path(attribute_file) if attribute_file else root / ATTRIBUTE_FILE
    images = Path(images_dir) if images_dir else _default_images_dir(root)
    if not 0.05 <= center_crop <= 1.0:
        raise DataError(f"center crop {center_crop} must be a fraction in [0.05, 1]")
    lines = read_lines(identity_path, "CelebA identity file")
    crop = FaceCrop(center_fraction=center_crop)
    candidates: dict[str, list[Candidate]] = {}
    dropped: Counter = Counter()
    seen: dict[str, int] = {}
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            dropped["malformed_row"] += 1
            logger.warning("%s, line %d: expected '<image> <identity number>', got %r; skipped", identity_path, line_number, line)
            continue
        image, identity = fields
        if image in seen:
            dropped["duplicate_row"] += 1
            logger.warning("%s, line %d: image %s already listed on line %d; skipped", identity_path, line_number, image, seen[image])
            continue
        seen[image] = line_number
        flat, nested = images / image, images / identity / image
        path = flat if flat.is_file() else nested if nested.is_file() else None
        if path is None:
            dropped["missing_file"] += 1
            logger.warning("%s, line %d: image %s is listed but neither %s nor %s exists; skipped", identity_path, line_number, image, flat, nested)
            continue
        candidates.setdefault(identity, []).append(Candidate(identity, str(path.relative_to(images)), crop, f"{path} ({identity_path.name} line {line_number})"))
    if not candidates:
        raise DataError(f"none of the images listed in {identity_path} was found under {images}")

    source = ScannedSource(
        name="celeba",
        path=str(root),
        candidates=candidates,
        make_face=lambda candidate, size: _make_face(images, candidate, size),
        parameters={"center_crop": center_crop, "identity_file": str(identity_path), "images_dir": str(images)},
        inputs=[str(identity_path), str(images)],
        dropped_images=dropped,
    )
    if attribute_path.is_file():
        flags = read_celeba_attribute_file(attribute_path)
        identity_of = {Path(c.source).name: c.identity for cands in candidates.values() for c in cands}
        votes = ((identity_of[image], celeba_image_labels(values)) for image, values in flags.items() if image in identity_of)
        source.attributes = majority_per_identity(votes)
        source.attribute_sources.append(str(attribute_path))
        source.parameters["attribute_file"] = str(attribute_path)
        unlabelled = len(identity_of) - sum(1 for image in flags if image in identity_of)
        if unlabelled:
            logger.warning("%s: %d listed image(s) have no attribute row", attribute_path, unlabelled)
    else:
        logger.warning("%s not found: the dataset will have no attributes", attribute_path)
    return source


def _make_face(images: Path, candidate: Candidate, size: int) -> np.ndarray:
    return cut_face(open_image(images / candidate.source, candidate.where), candidate.crop, size, candidate.where)


def prepare_celeba(
    root: str | Path,
    out: str | Path,
    selection: Selection | None = None,
    *,
    identity_file: str | Path | None = None,
    attribute_file: str | Path | None = None,
    images_dir: str | Path | None = None,
    center_crop: float = 1.0,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareResult:
    """Prepare CelebA (official files, flat or per-identity image folders) into ``out``."""
    check_output_apart(out, [root, identity_file, attribute_file, images_dir], overwrite=overwrite)
    source = scan_celeba(root, identity_file=identity_file, attribute_file=attribute_file, images_dir=images_dir, center_crop=center_crop)
    return build_prepared(out, source, selection or Selection(), overwrite=overwrite, progress=progress)
