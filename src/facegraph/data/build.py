"""From a source's candidate images to a prepared dataset: selection, per-identity sampling, split, writing.

Every source (folder, CelebA, IMDb-Face) lists candidate images per identity and says how to turn one into a
face array; this module decides which to keep, runs the work on a thread pool and writes the result atomically.

Selection: identities are taken in name order (a seeded shuffle with ``max_identities``); each identity's
candidates are visited in a seeded order and processed until ``per_identity`` of them are usable, so the kept
images are a uniform sample of the usable ones and no more work (or download) is done than needed. An identity
with fewer than ``min_images`` usable images is dropped.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from facegraph import __version__
from facegraph.data.attributes import UNKNOWN, IdentityAttributes, attribute_coverage, ordered_features
from facegraph.data.images import FaceCrop, UnusableImage
from facegraph.data.prepared import IMAGES_DIR, SPLIT_NAMES, Identity, Sample, StagedDataset
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

JPEG_QUALITY = 95
PAPER_SPLIT = {"train": 0.8, "test": 0.2}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One image a source offers: its identity name, origin (path or URL), face location and a fixed split if any."""

    identity: str
    source: str
    crop: FaceCrop
    where: str
    split: str | None = None


# Turns a candidate into a (size, size, 3) uint8 face; raises UnusableImage for an image to skip.
FaceMaker = Callable[[Candidate, int], np.ndarray]


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class Selection:
    """Which images end up in the dataset, and how big; the paper's IMDb-Face values are 100 / 100 / 80-20 / 128."""

    image_size: int = 128
    min_images: int = 1
    per_identity: int | None = None
    max_identities: int | None = None
    split: dict[str, float] = field(default_factory=lambda: dict(PAPER_SPLIT))
    seed: int = 0
    workers: int = field(default_factory=default_workers)

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise DataError(f"image size {self.image_size} is too small (at least 8 pixels)")
        if self.min_images < 1:
            raise DataError(f"min images {self.min_images} must be at least 1")
        if self.per_identity is not None and self.per_identity < self.min_images:
            raise DataError(f"per-identity {self.per_identity} is smaller than min-images {self.min_images}")
        if self.max_identities is not None and self.max_identities < 1:
            raise DataError(f"max identities {self.max_identities} must be at least 1")
        if self.workers < 1:
            raise DataError(f"workers {self.workers} must be at least 1")
        if not 0 <= self.seed < 2**63:
            raise DataError(f"seed {self.seed} must be a non-negative integer below 2**63")
        if abs(sum(self.split.values()) - 1.0) > 1e-6 or any(part < 0 for part in self.split.values()):
            raise DataError(f"split fractions {self.split} must be non-negative and sum to 1")


def parse_split(text: str) -> dict[str, float]:
    """``80/20`` -> train/test, ``80/10/10`` -> train/val/test: percentages summing to 100 (or fractions summing to 1).

    Parts that sum to anything else are refused rather than rescaled: ``80/30`` is a typo, not a request.
    """
    try:
        parts = [float(part) for part in text.replace(",", "/").split("/")]
    except ValueError:
        raise DataError(f"split {text!r} is not like 80/20 or 80/10/10") from None
    if len(parts) not in (2, 3) or parts[0] <= 0 or any(part < 0 for part in parts):
        raise DataError(f"split {text!r} is not like 80/20 or 80/10/10 (train must be > 0)")
    total = sum(parts)
    if abs(total - 100) > 1e-6 and abs(total - 1) > 1e-9:
        raise DataError(f"split {text!r} sums to {total:g}; the parts must sum to 100 (e.g. 80/20 or 80/10/10)")
    names = ("train", "test") if len(parts) == 2 else SPLIT_NAMES
    return {name: part / total for name, part in zip(names, parts)}


def check_output_apart(out: str | Path, inputs: Iterable[str | Path | None], *, overwrite: bool = False) -> None:
    """Refuse, before anything is written, an output folder that cannot hold a prepared dataset.

    ``out`` may not equal, contain or lie inside any of ``inputs`` (with ``--overwrite`` that would delete the
    source photos; without it, a dataset inside a photo folder becomes an identity of the next prepare), may not
    be an existing file, and must be creatable: its nearest existing parent a writable folder. None inputs are skipped.
    """
    target = Path(out).expanduser().resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).expanduser().resolve()
        if target == source:
            raise DataError(f"output {out} is the input {given}; choose an --out outside the input (--overwrite would delete it)")
        if source.is_relative_to(target):
            raise DataError(f"output {out} contains the input {given}; choose an --out outside the input (--overwrite would delete it)")
        if target.is_relative_to(source) and source.is_dir():
            raise DataError(f"output {out} lies inside the input folder {given}; choose an --out outside it")
    if target.exists() and not target.is_dir():
        raise DataError(f"output {out} is an existing file, not a dataset folder; choose another --out")
    if target.exists() and not overwrite:
        raise DataError(f"{out} already exists; choose another --out or pass --overwrite")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"cannot create output {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"cannot create output {out}: {parent} is not writable")


def assign_splits(count_: int, fractions: dict[str, float]) -> list[str]:
    """Split labels for ``count_`` images in order: boundaries at the rounded cumulative fractions."""
    labels: list[str] = []
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        end = round(cumulative * count_)
        labels += [name] * (end - len(labels))
    return labels + [list(fractions)[-1]] * (count_ - len(labels))


@dataclass
class ScannedSource:
    """What a source found before any image is decoded."""

    name: str
    path: str
    candidates: dict[str, list[Candidate]]
    make_face: FaceMaker
    parameters: dict[str, Any] = field(default_factory=dict)
    dropped_images: Counter = field(default_factory=Counter)
    dropped_identities: Counter = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)
    attributes: dict[str, IdentityAttributes] = field(default_factory=dict)
    attribute_sources: list[str] = field(default_factory=list)
    # Further files and folders the source reads (or caches into): an output may not overlap them.
    inputs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PrepareResult:
    """What a prepare produced, for the CLI's summary."""

    root: Path
    identities: int
    images: int
    split_counts: dict[str, int]
    dropped_images: dict[str, int]
    dropped_identities: dict[str, int]
    attribute_coverage: dict[str, int]
    anomalies: list[str]


@dataclass(frozen=True)
class _Face:
    staged: Path
    channel_sum: np.ndarray
    channel_sum_squares: np.ndarray
    pixels: int


@dataclass
class _IdentityWork:
    name: str
    pending: deque
    target: int
    in_flight: int = 0
    usable: list[tuple[int, Candidate, _Face]] = field(default_factory=list)

    def hopeless(self, min_images: int) -> bool:
        return len(self.usable) + self.in_flight + len(self.pending) < min_images

    def wanted(self) -> int:
        return min(len(self.pending), self.target - len(self.usable) - self.in_flight)

    def settled(self, min_images: int) -> bool:
        return self.in_flight == 0 and (self.hopeless(min_images) or len(self.usable) >= self.target or not self.pending)


def _identity_rng(seed: int, name: str) -> np.random.Generator:
    # Seeded per identity, so an identity's sample does not depend on which other identities exist.
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


class _Scheduler:
    """Runs the face maker over candidates on a thread pool until every identity is settled."""

    def __init__(self, source: ScannedSource, selection: Selection, staging: Path, progress: bool) -> None:
        self.source = source
        self.selection = selection
        self.staged_dir = staging / IMAGES_DIR / "_staged"
        self.staged_dir.mkdir(parents=True)
        self.serial = count()
        self.dropped_images: Counter = Counter()
        self.dropped_identities: Counter = Counter()
        self.kept: dict[str, list[tuple[int, Candidate, _Face]]] = {}
        self.progress = progress

    def _order(self) -> list[str]:
        eligible = []
        for name in sorted(self.source.candidates):
            if len(self.source.candidates[name]) >= self.selection.min_images:
                eligible.append(name)
            else:
                self.dropped_identities["too_few_images"] += 1
        if self.selection.max_identities is not None:
            np.random.default_rng(self.selection.seed).shuffle(eligible)
        return eligible

    def _work_for(self, name: str) -> _IdentityWork:
        candidates = self.source.candidates[name]
        fixed = all(candidate.split is not None for candidate in candidates)
        order = range(len(candidates)) if fixed else _identity_rng(self.selection.seed, name).permutation(len(candidates))
        target = len(candidates) if self.selection.per_identity is None or fixed else self.selection.per_identity
        # Ranks in the seeded order: kept images are sorted by rank, so the split is a seeded random one.
        return _IdentityWork(name, deque((rank, candidates[int(position)]) for rank, position in enumerate(order)), target)

    def _make(self, candidate: Candidate) -> _Face:
        face = self.source.make_face(candidate, self.selection.image_size)
        staged = self.staged_dir / f"{next(self.serial)}.jpg"
        try:
            Image.fromarray(face).save(staged, quality=JPEG_QUALITY)
        except OSError as error:
            raise DataError(f"cannot write {staged}: {error.strerror or error}") from None
        values = face.reshape(-1, 3).astype(np.float64) / 255.0
        return _Face(staged, values.sum(axis=0), (values * values).sum(axis=0), values.shape[0])

    def run(self) -> None:
        queue = deque(self._order())
        limit = self.selection.max_identities
        per_identity = self.selection.per_identity
        estimate = sum(min(len(self.source.candidates[n]), per_identity or len(self.source.candidates[n])) for n in list(queue)[: limit or None])
        active: list[_IdentityWork] = []
        futures: dict[Future, tuple[_IdentityWork, int, Candidate]] = {}
        capacity = 4 * self.selection.workers
        with (
            ThreadPoolExecutor(self.selection.workers, thread_name_prefix="prepare") as pool,
            tqdm(total=estimate, unit="img", desc=f"prepare {self.source.name}", disable=not self.progress) as bar,
        ):
            try:
                while True:
                    changed = True
                    while changed:
                        while queue and (limit is None or len(self.kept) + len(active) < limit):
                            active.append(self._work_for(queue.popleft()))
                        for work in active:
                            while len(futures) < capacity and not work.hopeless(self.selection.min_images) and work.wanted() > 0:
                                position, candidate = work.pending.popleft()
                                work.in_flight += 1
                                futures[pool.submit(self._make, candidate)] = (work, position, candidate)
                        changed = self._settle(active)
                    if not futures:
                        break
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        work, position, candidate = futures.pop(future)
                        work.in_flight -= 1
                        bar.update(1)
                        try:
                            work.usable.append((position, candidate, future.result()))
                        except UnusableImage as error:
                            self.dropped_images[error.reason] += 1
                            bar.set_postfix(skipped=sum(self.dropped_images.values()))
                            logger.warning("skipped (%s) %s", error.reason, error)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _settle(self, active: list[_IdentityWork]) -> bool:
        settled = [work for work in active if work.settled(self.selection.min_images)]
        for work in settled:
            active.remove(work)
            if len(work.usable) >= self.selection.min_images:
                self.kept[work.name] = sorted(work.usable, key=lambda item: item[0])
            else:
                self.dropped_identities["too_few_usable_images"] += 1
                logger.info("identity %s dropped: %d usable image(s), fewer than %d", work.name, len(work.usable), self.selection.min_images)
                for _, _, face in work.usable:
                    face.staged.unlink()
        return bool(settled)


def _normalization(faces: list[_Face]) -> dict[str, Any]:
    pixels = sum(face.pixels for face in faces)
    mean = sum(face.channel_sum for face in faces) / pixels
    variance = sum(face.channel_sum_squares for face in faces) / pixels - mean * mean
    std = np.sqrt(np.maximum(variance, 1e-12))
    return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std]}


def build_prepared(out: str | Path, source: ScannedSource, selection: Selection, *, overwrite: bool = False, progress: bool = False) -> PrepareResult:
    """Select, cut and write the images of ``source`` into a prepared dataset at ``out`` (atomically)."""
    check_output_apart(out, [source.path, *source.inputs, *source.attribute_sources], overwrite=overwrite)
    with StagedDataset(out, overwrite=overwrite) as staged:
        scheduler = _Scheduler(source, selection, staged.staging, progress)
        scheduler.run()
        dropped_images = source.dropped_images + scheduler.dropped_images
        dropped_identities = source.dropped_identities + scheduler.dropped_identities
        if not scheduler.kept:
            raise DataError(
                f"no identity of {source.path} has {selection.min_images} usable image(s); nothing written "
                f"(dropped images: {dict(dropped_images) or 'none'}; identities: {dict(dropped_identities) or 'none'})"
            )
        features = ordered_features({feature for attrs in source.attributes.values() for feature in attrs})
        identities: list[Identity] = []
        samples: list[Sample] = []
        train_faces: list[_Face] = []
        for identity_id, name in enumerate(sorted(scheduler.kept)):
            kept = scheduler.kept[name]
            attributes = {feature: source.attributes.get(name, {}).get(feature, UNKNOWN) for feature in features}
            identities.append(Identity(identity_id, name, attributes))
            splits = [c.split for _, c, _ in kept] if kept[0][1].split is not None else assign_splits(len(kept), selection.split)
            folder = staged.staging / IMAGES_DIR / f"{identity_id:05d}"
            folder.mkdir()
            for number, ((_, candidate, face), split) in enumerate(zip(kept, splits)):
                relative = f"{IMAGES_DIR}/{identity_id:05d}/{number:04d}.jpg"
                os.replace(face.staged, staged.staging / relative)
                samples.append(Sample(relative, identity_id, split, candidate.source))
                if split == "train":
                    train_faces.append(face)
        scheduler.staged_dir.rmdir()
        split_counts = {name: sum(1 for s in samples if s.split == name) for name in SPLIT_NAMES if any(s.split == name for s in samples)}
        coverage = attribute_coverage({i.name: i.attributes for i in identities}, features)
        info = {
            "source": source.name,
            "source_path": source.path,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "facegraph_version": __version__,
            "image_size": selection.image_size,
            "seed": selection.seed,
            "parameters": {**asdict(selection), **source.parameters},
            "counts": {
                "identities": len(identities),
                "images": len(samples),
                "splits": split_counts,
                "source_identities": len(source.candidates) + sum(source.dropped_identities.values()),
                "source_images": sum(len(c) for c in source.candidates.values()) + sum(source.dropped_images.values()),
            },
            "dropped": {"images": dict(sorted(dropped_images.items())), "identities": dict(sorted(dropped_identities.items()))},
            "anomalies": source.anomalies,
            "attributes": {"sources": source.attribute_sources, "coverage": coverage},
            # Computed on the train split (all images where there is none), in [0, 1] pixel units.
            "normalization": {**_normalization(train_faces or [face for _, kept in scheduler.kept.items() for _, _, face in kept]), "computed_on": "train" if train_faces else "all"},
        }
        root = staged.commit(identities, samples, features, info)
    logger.info("prepared %d identities, %d images in %s", len(identities), len(samples), root)
    return PrepareResult(root, len(identities), len(samples), split_counts, info["dropped"]["images"], info["dropped"]["identities"], coverage, source.anomalies)
