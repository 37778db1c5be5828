"""Open-set search with a run: a gallery of people embedded (and cached in RUN/galleries/), its threshold calibrated
on the gallery's own impostor pairs, and query photos answered with a person or "unknown".

The search itself (per-person scores, the threshold at a false accept rate) is recognition.gallery's.
"""

from __future__ import annotations

import filecmp
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facegraph.data.prepared import load_prepared
from facegraph.engine.trained import TrainedRun
from facegraph.errors import ConfigError, DataError
from facegraph.models import DEFAULT_LAYOUT
from facegraph.recognition.embedding import (embed_images, image_files, is_prepared_dataset, prepared_for_run,
                                             run_preprocessing)
from facegraph.recognition.gallery import (Gallery, SearchResult, calibrate_threshold, false_alarm_bound,
                                          gallery_fingerprint)
from facegraph.recognition.protocol import pair_similarities
from facegraph.rundir import read_gallery_cache, write_gallery_cache

logger = logging.getLogger(__name__)

MAX_IMPOSTOR_SCORES = 2_000_000  # a larger gallery's impostor pairs are subsampled (seeded) for calibration


@dataclass(frozen=True)
class GalleryImages:
    """A gallery's image files, each person's name, and how to cut them (`originals`: for a prepared dataset, the
    photos its images were cut from, where they still exist, so that a query of one is known for a gallery image)."""

    source: Path
    paths: list[Path]
    people: list[str]
    preprocessing: dict[str, Any]
    originals: list[Path] = field(default_factory=list)


def gallery_images(trained: TrainedRun, source: str | Path, center_crop: float | None = None) -> GalleryImages:
    """A gallery folder (one sub-folder per person, images inside) or a prepared dataset (every sample, its
    identity's name). `center_crop` cuts a folder's photos with that crop instead of the run's; a prepared
    dataset's faces are cut already, as it was prepared."""
    source = Path(source)
    if is_prepared_dataset(source):
        dataset = load_prepared(source)
        prepared_for_run(trained, dataset)
        source_path = dataset.info.get("source_path")
        originals = [Path(source_path) / s.source for s in dataset.samples if source_path and s.source]
        return GalleryImages(source, [Path(dataset.root) / s.path for s in dataset.samples],
                             [dataset.identities[s.identity].name for s in dataset.samples],
                             run_preprocessing(trained, prepared=True), [p for p in originals if p.is_file()])
    if not source.exists():
        raise DataError(f"gallery {source} does not exist")
    if not source.is_dir():
        raise DataError(f"gallery {source} is neither a folder of people nor a prepared dataset")
    paths, people = [], []
    for person in sorted(p for p in source.iterdir() if p.is_dir()):
        for path in image_files(person):
            paths.append(path)
            people.append(person.name)
    if not paths:
        raise DataError(f"gallery {source}: no images in per-person sub-folders (expected {source}/<person>/<image>)")
    if len(set(people)) < 2:
        raise DataError(f"gallery {source} has {len(set(people))} person; at least 2 are needed to calibrate the "
                        "threshold on impostor pairs")
    return GalleryImages(source, paths, people, run_preprocessing(trained, prepared=False, center_crop=center_crop))


def gallery_cache_key(trained: TrainedRun, images: GalleryImages) -> str:
    """The fingerprint of the gallery files (path, size, mtime) and of the run's checkpoint file, and the fused
    graph's layout and the photos' centre crop unless they are the run's own (caches made with those keep their
    key)."""
    files = []
    for path in [*images.paths, trained.run.checkpoint_path(trained.checkpoint)]:
        stat = path.stat()
        files.append((path.resolve(), stat.st_size, stat.st_mtime))
    key = gallery_fingerprint(files)
    if trained.layout != DEFAULT_LAYOUT:
        key += f"-{trained.layout}"
    crop = float(images.preprocessing["center_crop"])
    if crop != float(run_preprocessing(trained, is_prepared_dataset(images.source))["center_crop"]):
        key += f"-crop{crop:g}"
    return key


@dataclass
class RunGallery:
    """A gallery embedded by a run: the searchable Gallery, its calibrated threshold and where it came from
    (`image_files`: its image files and a prepared gallery's original photos, resolved, by size in bytes, to
    recognise a query that is one of them)."""

    gallery: Gallery
    threshold: float
    far: float
    impostor_pairs: int
    images: int
    skipped: list[tuple[str, str]]
    cache_path: Path
    from_cache: bool
    image_files: dict[int, list[Path]]

    def holds_file(self, path: str | Path) -> bool:
        """Whether `path` is one of the gallery's image files (or a photo a prepared gallery's image was cut from) or a
        byte-for-byte copy of one."""
        try:
            path = Path(path).resolve()
            return any(path == image or filecmp.cmp(path, image, shallow=False)
                       for image in self.image_files.get(path.stat().st_size, []))
        except OSError:  # a file that vanished since is no gallery image
            return False

    @property
    def false_alarm_bound(self) -> float:
        """Up to this share of strangers is named as someone at `far` per image pair (gallery.false_alarm_bound)."""
        return false_alarm_bound(self.far, self.images)

    def to_dict(self) -> dict[str, Any]:
        return {"people": len(self.gallery.people), "images": self.images, "threshold": self.threshold,
                "far": self.far, "false_alarm_bound": self.false_alarm_bound, "impostor_pairs": self.impostor_pairs,
                "cache": str(self.cache_path), "from_cache": self.from_cache,
                "skipped": [{"image": i, "error": e} for i, e in self.skipped]}


def impostor_scores(embeddings: np.ndarray, people: Sequence[str], limit: int = MAX_IMPOSTOR_SCORES) -> np.ndarray:
    """Cosine similarities of every pair of images of different people (a seeded sample of `limit` when more)."""
    first, second = impostor_pairs(np.unique(np.asarray(people), return_inverse=True)[1], limit)
    return pair_similarities(embeddings, first, second)


def impostor_pairs(person_codes: np.ndarray, limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (first < second) of images of different people (`person_codes[i]`: image i's person): every one,
    or a seeded uniform sample of `limit` of them when there are more.

    Up to 8 x `limit` pairs they are listed and the sample drawn from the list. Beyond that, listing them would take
    gigabytes (a 20,000-photo gallery has 200 million pairs), so pairs are drawn at random instead, the same person's
    rejected and repeats dropped in the order drawn, until `limit` remain: again a uniform sample without replacement.
    """
    codes = np.asarray(person_codes)
    images = len(codes)
    per_person = np.bincount(codes)
    pairs = images * (images - 1) // 2 - int((per_person * (per_person - 1) // 2).sum())
    if pairs <= 8 * limit:
        upper_first, upper_second = np.triu_indices(images, k=1)
        different = codes[upper_first] != codes[upper_second]
        first, second = upper_first[different], upper_second[different]
        if len(first) > limit:
            chosen = np.random.default_rng(seed).choice(len(first), size=limit, replace=False)
            first, second = first[chosen], second[chosen]
        return first, second
    rng = np.random.default_rng(seed)
    keys = np.empty(0, dtype=np.int64)  # first * images + second, distinct, in the order drawn
    while len(keys) < limit:
        drawn = rng.integers(0, images, size=(2, limit))
        first, second = drawn.min(axis=0), drawn.max(axis=0)
        keep = codes[first] != codes[second]  # also drops first == second: one image is one person
        keys = np.concatenate([keys, first[keep].astype(np.int64) * images + second[keep]])
        keys = keys[np.sort(np.unique(keys, return_index=True)[1])]
    keys = keys[:limit]
    return keys // images, keys % images


def load_gallery(trained: TrainedRun, source: str | Path, *, far: float = 1e-3, batch_size: int = 32,
                 center_crop: float | None = None) -> RunGallery:
    """Embed a gallery (or read RUN/galleries/<fingerprint>.npz when its files have not changed) and calibrate the
    open-set threshold at `far` on the gallery's own impostor pairs (images of two different gallery people).

    `far` is a rate per image pair: a stranger meets every gallery image, so up to images x `far` of strangers are
    named as someone (`RunGallery.false_alarm_bound`). `center_crop`: see gallery_images."""
    if not 0.0 < far < 1.0:
        raise ConfigError(f"--far must lie in (0, 1), got {far}")
    images = gallery_images(trained, source, center_crop)
    key = gallery_cache_key(trained, images)
    cache_path = trained.run.gallery_cache_path(key)
    from_cache = cache_path.is_file()
    if from_cache:
        try:
            embeddings, names, skipped = read_gallery_cache(cache_path)
            logger.info("gallery: %d embeddings read from %s", len(names), cache_path)
        except (OSError, KeyError, ValueError) as error:
            logger.warning("gallery cache %s unreadable (%s): embedding again", cache_path, error)
            from_cache = False
    if not from_cache:
        logger.info("gallery: embedding %d images of %d people from %s", len(images.paths), len(set(images.people)),
                    images.source)
        embedded = embed_images(trained, images.paths, preprocessing=images.preprocessing, batch_size=batch_size)
        person_of = dict(zip(map(str, images.paths), images.people))
        embeddings, names = embedded.embeddings, [person_of[n] for n in embedded.names]
        skipped = embedded.failures
        if not names:
            raise DataError(f"gallery {images.source}: no image could be read")
        write_gallery_cache(cache_path, embeddings, names, embedded.names, skipped)
    scores = impostor_scores(embeddings, names)
    if not len(scores):
        raise DataError(f"gallery {images.source}: no two readable images of different people to calibrate on")
    threshold = calibrate_threshold(scores, far)
    image_files: dict[int, list[Path]] = {}
    for path in [*images.paths, *images.originals]:
        image_files.setdefault(path.stat().st_size, []).append(path.resolve())
    return RunGallery(Gallery(embeddings, names), threshold, far, len(scores), len(names), list(skipped), cache_path,
                      from_cache, image_files)


def search_gallery(trained: TrainedRun, run_gallery: RunGallery, images: Sequence[str | Path], *, top_k: int = 5,
                   batch_size: int = 32, center_crop: float | None = None) -> dict[str, SearchResult]:
    """Open-set answers for the readable query photos, keyed by the image as given (unreadable ones are absent).

    A query that is itself a gallery image (the same file or a copy) matches itself (similarity 1): its answer is
    marked `in_gallery` and a warning is logged, so that nobody takes it for recognition. The photos are cut as the
    run's dataset was prepared or, given `center_crop`, with that centre crop."""
    embedded = embed_images(trained, images, preprocessing=run_preprocessing(trained, False, center_crop),
                            batch_size=batch_size, names=[str(Path(p)) for p in images])
    if not embedded.names:
        return {}
    results = run_gallery.gallery.search(embedded.embeddings, run_gallery.threshold, top_k=top_k)
    answers = {name: replace(result, in_gallery=run_gallery.holds_file(name))
               for name, result in zip(embedded.names, results)}
    enrolled = [name for name, result in answers.items() if result.in_gallery]
    if enrolled:
        logger.warning("%d query photo(s) are images of the gallery itself or copies (%s%s): each matches itself "
                       "(similarity 1), which is not recognition", len(enrolled), ", ".join(enrolled[:3]),
                       ", ..." if len(enrolled) > 3 else "")
    return answers
