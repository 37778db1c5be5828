"""IMDb-Face: the official index (``IMDb-Face.csv``: photo URLs and face boxes) prepared as the paper describes,
and the paper authors' split lists (``splits/{train,val,test}_labels.csv``) for users holding their images.

The paper's selection (defaults): face boxes with aspect ratio (width / height) in [0.75, 1.25]; identities with
at least 100 usable images; 100 sampled per identity (seeded); 80/20 split per identity; 128 x 128 crops.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from facegraph.data.attributes import AnnotationRecord, IdentityAttributes, annotations_by_name, read_coded_annotations
from facegraph.data.build import Candidate, PrepareResult, ScannedSource, Selection, build_prepared, check_output_apart
from facegraph.data.images import FaceCrop, cut_face, open_image
from facegraph.data.prepared import SPLIT_NAMES
from facegraph.data.sources.download import DownloadCache, HttpOptions, http_get
from facegraph.data.textfile import decoded_lines, open_binary
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

INDEX_COLUMNS = ("name", "index", "image", "rect", "height width", "url")
REQUIRED_COLUMNS = ("name", "rect", "url")
PAPER_ASPECT_RATIO = (0.75, 1.25)
PAPER_SELECTION = dict(min_images=100, per_identity=100, image_size=128)
DOWNLOAD_WORKERS = 16


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One usable-looking row of the official index."""

    line: int
    name: str
    imdb_id: str
    box: tuple[float, float, float, float]
    frame: tuple[int, int] | None
    url: str


def _numbers(text: str, count: int) -> list[float] | None:
    parts = text.replace(",", " ").split()
    if len(parts) != count:
        return None
    try:
        return [float(part) for part in parts]
    except ValueError:
        return None


def _columns_of(first_row: list[str], path: Path) -> tuple[dict[str, int], bool]:
    """Column positions and whether the first row is a header (the official file has one)."""
    cells = [cell.strip().lower() for cell in first_row]
    if "url" in cells or "rect" in cells:
        missing = [column for column in REQUIRED_COLUMNS if column not in cells]
        if missing:
            raise DataError(f"{path}, line 1: header lacks column(s) {', '.join(missing)} (expected {','.join(INDEX_COLUMNS)})")
        return {column: cells.index(column) for column in INDEX_COLUMNS if column in cells}, True
    if first_row and first_row[-1].strip().startswith(("http://", "https://")) and len(first_row) in (5, 6):
        # Headerless, as some copies are: the official order, with or without the size column.
        names = INDEX_COLUMNS if len(first_row) == 6 else tuple(c for c in INDEX_COLUMNS if c != "height width")
        return {column: position for position, column in enumerate(names)}, False
    raise DataError(f"{path}, line 1: neither the header {','.join(INDEX_COLUMNS)!r} nor a data row: {first_row!r}")


def iter_index(path: str | Path, dropped: Counter) -> Iterator[IndexRow]:
    """Rows of ``IMDb-Face.csv`` one at a time (tab or comma separated, CRLF, BOM, quoting tolerated); malformed
    rows are logged and counted in ``dropped``. Streamed: the official file has about 1.7 M rows."""
    path = Path(path)
    with open_binary(path, "IMDb-Face index") as handle:
        first_line = handle.readline()
        handle.seek(0)
        delimiter = "\t" if b"\t" in first_line else ","
        # Decoded line by line, so a line that is not UTF-8 is named (a Latin-1 export stops there).
        reader = csv.reader(decoded_lines(path, handle), delimiter=delimiter)
        try:
            first = next(reader, None)
            if first is None:
                raise DataError(f"{path} is empty")
            columns, has_header = _columns_of(first, path)
            records: Iterator[list[str]] = reader if has_header else _prepend(first, reader)
            for record in records:
                if not any(cell.strip() for cell in record):
                    continue
                row = _parse_row(record, columns, path, reader.line_num)
                if row is None:
                    dropped["malformed_row"] += 1
                else:
                    yield row
        except csv.Error as error:
            raise DataError(f"{path}, line {reader.line_num}: unreadable CSV ({error})") from None


def _prepend(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


def _parse_row(record: list[str], columns: dict[str, int], path: Path, line: int) -> IndexRow | None:
    if len(record) < max(columns.values()) + 1:
        logger.warning("%s, line %d: %d fields, expected %d; skipped", path, line, len(record), max(columns.values()) + 1)
        return None
    cell = {column: record[position].strip() for column, position in columns.items()}
    box = _numbers(cell["rect"], 4)
    if box is None or not (box[0] < box[2] and box[1] < box[3]):
        logger.warning("%s, line %d, column rect: %r is not 'x1 y1 x2 y2' with x1 < x2, y1 < y2; skipped", path, line, cell["rect"])
        return None
    frame = None
    if cell.get("height width"):
        size = _numbers(cell["height width"], 2)
        if size is None or min(size) <= 0:
            logger.warning("%s, line %d, column height width: %r is not 'height width'; skipped", path, line, cell["height width"])
            return None
        frame = (int(size[0]), int(size[1]))
    if not cell["name"]:
        logger.warning("%s, line %d, column name: empty; skipped", path, line)
        return None
    if not cell["url"].startswith(("http://", "https://")):
        logger.warning("%s, line %d, column url: %r is not an http(s) URL; skipped", path, line, cell["url"])
        return None
    return IndexRow(line, cell["name"], cell.get("index", ""), tuple(box), frame, cell["url"])


def scan_index(
    csv_path: str | Path,
    *,
    aspect_ratio: tuple[float, float] = PAPER_ASPECT_RATIO,
    download_dir: str | Path,
    http: HttpOptions = HttpOptions(),
    annotations: str | Path | None = None,
    only_annotated: bool = False,
) -> ScannedSource:
    """Candidates of the official index after the static checks (row format, aspect ratio, box inside the frame)."""
    csv_path = Path(csv_path)
    low, high = aspect_ratio
    if not 0 < low <= high:
        raise DataError(f"aspect ratio range {low}..{high} is not a range of positive numbers")
    anomalies: list[str] = []
    by_name: dict[str, IdentityAttributes] = {}
    if annotations is not None:
        by_name, anomalies = annotations_by_name(read_coded_annotations(annotations), annotations)
    dropped: Counter = Counter()
    by_person: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for row in iter_index(csv_path, dropped):
        x1, y1, x2, y2 = row.box
        where = f"{csv_path.name} line {row.line} ({row.url})"
        if not low <= (x2 - x1) / (y2 - y1) <= high:
            dropped["aspect_ratio"] += 1
            continue
        if row.frame is not None and not (0 <= x1 and 0 <= y1 and x2 <= row.frame[1] and y2 <= row.frame[0]):
            dropped["box_outside_photo"] += 1
            logger.warning("skipped (box_outside_photo) %s: box %s outside the %d x %d photo", where, row.box, row.frame[1], row.frame[0])
            continue
        if only_annotated and row.name not in by_name:
            dropped["not_annotated"] += 1
            continue
        by_person[(row.name, row.imdb_id)].append(Candidate(row.name, row.url, FaceCrop(box=row.box, box_frame=row.frame), where))
    candidates, name_of_identity, naming_anomalies = _identities_of(by_person)
    anomalies += naming_anomalies
    # Annotations are looked up by the index's name, so `<name>_<id>` identities keep their person's labels.
    attributes = {identity: by_name[name] for identity, name in name_of_identity.items() if name in by_name}
    cache = DownloadCache(download_dir)

    def make_face(candidate: Candidate, size: int) -> np.ndarray:
        data = cache.get(candidate.source)
        fresh = data is None
        if fresh:
            data = http_get(candidate.source, http)
        face = cut_face(open_image(data, candidate.where), candidate.crop, size, candidate.where)
        if fresh:  # only photos that decoded are kept for the next run
            cache.put(candidate.source, data)
        return face

    return ScannedSource(
        name="imdb-face",
        path=str(csv_path),
        candidates=dict(candidates),
        make_face=make_face,
        parameters={
            "aspect_ratio": list(aspect_ratio),
            "center_crop": 1.0,  # a photo given at inference is taken whole (as a face crop)
            "download_dir": str(download_dir),
            "http": {"timeout": http.timeout, "retries": http.retries, "backoff": http.backoff},
            "only_annotated": only_annotated,
        },
        inputs=[str(download_dir)],
        dropped_images=dropped,
        anomalies=anomalies,
        attributes=attributes,
        attribute_sources=[str(annotations)] if annotations else [],
    )


def _identities_of(by_person: dict[tuple[str, str], list[Candidate]]) -> tuple[dict[str, list[Candidate]], dict[str, str], list[str]]:
    """Candidates per identity, the index name of each identity, anomalies. An identity is the name, or
    ``<name>_<id>`` for each person where a name has several IMDb ids."""
    ids_of_name: dict[str, list[str]] = defaultdict(list)
    for name, imdb_id in by_person:
        ids_of_name[name].append(imdb_id)
    anomalies = [
        f"name {name} is used for several IMDb ids ({', '.join(sorted(ids))}): kept apart as <name>_<id>"
        for name, ids in sorted(ids_of_name.items())
        if len(ids) > 1
    ]
    for anomaly in anomalies:
        logger.warning(anomaly)
    candidates: dict[str, list[Candidate]] = {}
    name_of_identity: dict[str, str] = {}
    for (name, imdb_id), cands in by_person.items():
        identity = f"{name}_{imdb_id}" if len(ids_of_name[name]) > 1 else name
        candidates[identity] = [replace(c, identity=identity) for c in cands] if identity != name else cands
        name_of_identity[identity] = name
    return candidates, name_of_identity, anomalies


def default_download_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + "-downloads")


def prepare_imdb_face(
    csv_path: str | Path,
    out: str | Path,
    selection: Selection | None = None,
    *,
    aspect_ratio: tuple[float, float] = PAPER_ASPECT_RATIO,
    download_dir: str | Path | None = None,
    http: HttpOptions = HttpOptions(),
    annotations: str | Path | None = None,
    only_annotated: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareResult:
    """Download, select and crop IMDb-Face as the paper did. Downloads are cached in ``download_dir``
    (default ``<out>-downloads``), so a second run reuses every verified photo and continues an interrupted one."""
    selection = selection or Selection(workers=DOWNLOAD_WORKERS, **PAPER_SELECTION)
    download_dir = download_dir or default_download_dir(out)
    # Before the scan creates the download cache: --out may overlap none of the inputs nor the cache.
    check_output_apart(out, [csv_path, annotations, download_dir], overwrite=overwrite)
    source = scan_index(
        csv_path,
        aspect_ratio=aspect_ratio,
        download_dir=download_dir,
        http=http,
        annotations=annotations,
        only_annotated=only_annotated,
    )
    return build_prepared(out, source, selection, overwrite=overwrite, progress=progress)


# The authors' split lists: `images/<split>/<n>.jpg, <Name>, <Label>` per line, no header, CRLF.
SPLIT_LIST_PATTERN = "{split}_labels.csv"
SPLIT_LIST_IMAGE = re.compile(r"^images/(train|val|test)/[^/]+$")
MISSING_SHOWN = 10  # missing listed images logged one by one; the rest only counted


@dataclass(frozen=True)
class ListedImage:
    split: str
    image: str
    name: str
    label: int
    where: str


def read_split_lists(splits_dir: str | Path) -> tuple[list[ListedImage], list[str]]:
    """Every row of the authors' split lists, and the anomalies (a name under several labels, a label under
    several names). A malformed row is an error: skipping it would silently change the authors' split."""
    splits_dir = Path(splits_dir)
    listed: list[ListedImage] = []
    for split in SPLIT_NAMES:
        path = splits_dir / SPLIT_LIST_PATTERN.format(split=split)
        if not path.is_file():
            raise DataError(f"split list {path} not found (expected {', '.join(SPLIT_LIST_PATTERN.format(split=s) for s in SPLIT_NAMES)})")
        with open_binary(path, "split list") as handle:
            for line, record in enumerate(csv.reader(decoded_lines(path, handle)), start=1):
                if not any(cell.strip() for cell in record):
                    continue
                fields = [cell.strip() for cell in record]
                if len(fields) != 3 or not SPLIT_LIST_IMAGE.match(fields[0]) or not fields[2].lstrip("-").isdigit():
                    raise DataError(f"{path}, line {line}: expected 'images/{split}/<n>.jpg, <Name>, <Label>', got {','.join(record)!r}")
                if fields[0].split("/")[1] != split:
                    raise DataError(f"{path}, line {line}, column 1: image {fields[0]!r} is not in the {split} folder")
                listed.append(ListedImage(split, fields[0], fields[1], int(fields[2]), f"{path.name} line {line}"))
    anomalies = [
        f"name {name} carries labels {', '.join(map(str, sorted(labels)))}: kept as separate identities <name>#<label>"
        for name, labels in sorted(_labels_by_name(listed).items())
        if len(labels) > 1
    ]
    anomalies += [f"label {label} carries names {', '.join(sorted(names))}" for label, names in sorted(_names_by_label(listed).items()) if len(names) > 1]
    for anomaly in anomalies:
        logger.warning("%s: %s", splits_dir, anomaly)
    return listed, anomalies


def scan_split_lists(splits_dir: str | Path, images_root: str | Path, *, annotations: str | Path | None = None) -> ScannedSource:
    """Candidates with the authors' split fixed; identities are their labels (``<name>#<label>`` where a name repeats)."""
    listed, anomalies = read_split_lists(splits_dir)
    images_root = Path(images_root)
    if not images_root.is_dir():  # else every listed image would be reported missing, one line each
        raise DataError(f"images folder {images_root} does not exist (expected images/<split>/<n>.jpg under it)")
    names_by_label = _names_by_label(listed)
    if any(len(names) > 1 for names in names_by_label.values()):
        raise DataError(f"{splits_dir}: a label carries several names (see the log); the lists are inconsistent")
    repeated = {name for name, labels in _labels_by_name(listed).items() if len(labels) > 1}
    identity_of_label = {item.label: f"{item.name}#{item.label}" if item.name in repeated else item.name for item in listed}
    candidates: dict[str, list[Candidate]] = defaultdict(list)
    dropped: Counter = Counter()
    for item in listed:
        if not (images_root / item.image).is_file():
            dropped["missing_file"] += 1
            if dropped["missing_file"] <= MISSING_SHOWN:  # the count is reported with the others; a few examples here
                logger.warning("%s: image %s is listed but missing; skipped%s", item.where, images_root / item.image,
                               " (further missing images are only counted)" if dropped["missing_file"] == MISSING_SHOWN
                               else "")
            continue
        identity = identity_of_label[item.label]
        candidates[identity].append(Candidate(identity, item.image, FaceCrop(), f"{images_root / item.image} ({item.where})", split=item.split))
    if not candidates:
        raise DataError(f"none of the {len(listed)} images listed in {splits_dir} is under {images_root}")
    attributes: dict[str, IdentityAttributes] = {}
    if annotations is not None:
        records = read_coded_annotations(annotations)
        name_of_label = {label: next(iter(names)) for label, names in names_by_label.items()}
        attributes, annotation_anomalies = _attributes_by_label(records, identity_of_label, name_of_label, annotations)
        anomalies += annotation_anomalies

    def make_face(candidate: Candidate, size: int) -> np.ndarray:
        return cut_face(open_image(images_root / candidate.source, candidate.where), candidate.crop, size, candidate.where)

    return ScannedSource(
        name="imdb-face-lists",
        path=str(splits_dir),
        candidates=dict(candidates),
        make_face=make_face,
        parameters={"images_root": str(images_root), "center_crop": 1.0},
        inputs=[str(images_root)],
        dropped_images=dropped,
        anomalies=anomalies,
        attributes=attributes,
        attribute_sources=[str(annotations)] if annotations else [],
    )


def _labels_by_name(listed: list[ListedImage]) -> dict[str, set[int]]:
    result: dict[str, set[int]] = defaultdict(set)
    for item in listed:
        result[item.name].add(item.label)
    return result


def _names_by_label(listed: list[ListedImage]) -> dict[int, set[str]]:
    result: dict[int, set[str]] = defaultdict(set)
    for item in listed:
        result[item.label].add(item.name)
    return result


def _attributes_by_label(
    records: list[AnnotationRecord], identity_of_label: dict[int, str], name_of_label: dict[int, str], path: str | Path
) -> tuple[dict[str, IdentityAttributes], list[str]]:
    attributes: dict[str, IdentityAttributes] = {}
    anomalies: list[str] = []
    for record in records:
        identity = identity_of_label.get(record.label)
        if identity is None:
            continue
        if name_of_label[record.label] != record.name:
            anomalies.append(f"{path}, line {record.line}: label {record.label} is {record.name} here but {name_of_label[record.label]} in the split lists")
        attributes[identity] = record.attributes
    for anomaly in anomalies:
        logger.warning(anomaly)
    return attributes, anomalies


def prepare_imdb_face_lists(
    splits_dir: str | Path,
    images_root: str | Path,
    out: str | Path,
    *,
    image_size: int = 128,
    annotations: str | Path | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareResult:
    """Prepare the authors' images (``images_root/images/<split>/<n>.jpg``) with exactly their split."""
    check_output_apart(out, [splits_dir, images_root, annotations], overwrite=overwrite)
    source = scan_split_lists(splits_dir, images_root, annotations=annotations)
    selection = Selection(image_size=image_size, min_images=1, **({"workers": workers} if workers else {}))
    return build_prepared(out, source, selection, overwrite=overwrite, progress=progress)
