"""A folder of face photos with one sub-folder per identity (the LFW layout)."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from facegraph.data.attributes import IdentityAttributes, annotations_by_name, read_coded_annotations
from facegraph.data.build import Candidate, PrepareResult, ScannedSource, Selection, build_prepared, check_output_apart
from facegraph.data.images import IMAGE_EXTENSIONS, FaceCrop, cut_face, open_image
from facegraph.data.textfile import check_utf8_name
from facegraph.errors import DataError

logger = logging.getLogger(__name__)



def _identity_key(name: str) -> str:
    # Folder names that differ only in case or space/underscore are the same person written twice.
    return name.casefold().replace(" ", "_")


def _listing(folder: Path, what: str) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        raise DataError(f"cannot read {what} {folder}: {error.strerror or error}") from None


def scan_folder(src: str | Path, *, center_crop: float = 1.0) -> ScannedSource:
    """List the candidate images of ``src/<identity>/<image>``; non-image files and empty folders are counted."""
    root = Path(src)
    if not root.is_dir():
        raise DataError(f"{root} is not a directory (expected one sub-folder of photos per identity)")
    if not 0.05 <= center_crop <= 1.0:
        raise DataError(f"center crop {center_crop} must be a fraction in [0.05, 1]")
    crop = FaceCrop(center_fraction=center_crop)
    candidates: dict[str, list[Candidate]] = {}
    dropped_images: Counter = Counter()
    dropped_identities: Counter = Counter()
    folders_of_key: dict[str, list[str]] = defaultdict(list)
    for entry in _listing(root, "photo folder"):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            dropped_images["outside_identity_folder"] += 1
            logger.warning("%s: not inside an identity folder, ignored", entry)
            continue
        bad_name = check_utf8_name(entry)
        if bad_name is not None:
            # The folder name is the identity's name, written to identities.csv: it must be text.
            raise DataError(f"identity folder {bad_name} (or convert the names with convmv -f latin1 -t utf-8)")
        folders_of_key[_identity_key(entry.name)].append(entry.name)
        images = []
        for file in _listing(entry, "identity folder"):
            if file.name.startswith("."):
                continue
            bad_name = check_utf8_name(file)
            if bad_name is not None:
                dropped_images["name_not_utf8"] += 1
                logger.warning("%s; skipped", bad_name)
                continue
            if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(Candidate(entry.name, f"{entry.name}/{file.name}", crop, str(file)))
            else:
                dropped_images["not_an_image_file"] += 1
                logger.warning("%s: not an image file (%s), ignored", file, ", ".join(sorted(IMAGE_EXTENSIONS)))
        if images:
            candidates[entry.name] = images
        else:
            dropped_identities["empty_folder"] += 1
            logger.warning("%s: identity folder without images, ignored", entry)
    duplicates = [names for names in folders_of_key.values() if len(names) > 1]
    if duplicates:
        listed = "; ".join(" and ".join(str(root / name) for name in names) for names in duplicates)
        raise DataError(f"duplicate identity names (same name up to case or space/underscore): {listed}; merge or rename them")
    if not candidates:
        raise DataError(f"{root} has no identity folder with images (expected {root}/<identity>/<image>.jpg)")

    def make_face(candidate: Candidate, size: int) -> np.ndarray:
        return cut_face(open_image(root / candidate.source, candidate.where), candidate.crop, size, candidate.where, upright=True)

    return ScannedSource(
        name="folder",
        path=str(root),
        candidates=candidates,
        make_face=make_face,
        parameters={"center_crop": center_crop},
        dropped_images=dropped_images,
        dropped_identities=dropped_identities,
    )


def add_folder_attributes(source: ScannedSource, *, annotations: str | Path | None = None, lfw_attributes: str | Path | None = None) -> None:
    """Attach identity attributes by name: a coded annotation file (paper format) and/or the LFW attribute files."""
    merged: dict[str, IdentityAttributes] = {name: {} for name in source.candidates}
    if annotations is not None:
        by_name, anomalies = annotations_by_name(read_coded_annotations(annotations), annotations)
        source.anomalies += anomalies
        for name in merged:
            merged[name].update(by_name.get(name, {}))
        source.attribute_sources.append(str(annotations))
        logger.info("%s: attributes for %d of %d identities", annotations, sum(n in by_name for n in merged), len(merged))
    if lfw_attributes is not None:
        # LFW's own reader; imported here because sources/lfw.py builds on this module.
        from facegraph.data.sources.lfw import read_lfw_attributes

        images_of_identity = {name: [Path(c.source).name for c in cands] for name, cands in source.candidates.items()}
        lfw, used = read_lfw_attributes(lfw_attributes, images_of_identity)
        for name, attributes in lfw.items():
            merged[name].update(attributes)
        source.attribute_sources += used
    source.attributes = merged


def prepare_folder(
    src: str | Path,
    out: str | Path,
    selection: Selection | None = None,
    *,
    center_crop: float = 1.0,
    annotations: str | Path | None = None,
    lfw_attributes: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareResult:
    """Prepare ``src/<identity>/<image>`` into ``out``; see ``Selection`` for the options."""
    check_output_apart(out, [src, annotations, lfw_attributes], overwrite=overwrite)
    source = scan_folder(src, center_crop=center_crop)
    if annotations is not None or lfw_attributes is not None:
        add_folder_attributes(source, annotations=annotations, lfw_attributes=lfw_attributes)
    return build_prepared(out, source, selection or Selection(), overwrite=overwrite, progress=progress)
