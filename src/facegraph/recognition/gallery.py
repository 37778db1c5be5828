"""Open-set identification: search query faces in a gallery of known people, answering "unknown" below a threshold."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facegraph.errors import ConfigError, DataError
from facegraph.recognition.protocol import threshold_at_far

logger = logging.getLogger(__name__)

UNKNOWN_PERSON = "unknown"


def _unit_rows(embeddings: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    rows = torch.as_tensor(embeddings).detach().to("cpu", torch.float64)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise DataError(f"{what} must be a non-empty (N, D) matrix, got shape {tuple(rows.shape)}")
    norms = rows.norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        raise DataError(f"{what} must be L2-normalised; row norms range {float(norms.min()):.4g}..{float(norms.max()):.4g}")
    return rows


def calibrate_threshold(impostor_scores: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-accept rate on these impostor (different-person) scores is <= `far`.

    Just above the (k+1)-th highest impostor score, k = floor(far * n); compare scores to it in float64. With fewer
    than 1 / far impostor scores the rate cannot be resolved: the threshold then rejects every impostor (a warning
    is logged).
    """
    scores = np.asarray(impostor_scores, dtype=np.float64).ravel()
    if len(scores) * far < 1.0 - 1e-9:
        logger.warning("%d impostor scores cannot resolve a false-accept rate of %g; the threshold rejects all of them",
                       len(scores), far)
    return threshold_at_far(scores, far)[0]


def false_alarm_bound(far: float, gallery_images: int) -> float:
    """The share of strangers that a search at a threshold calibrated at `far` per image pair names as someone: up to
    `gallery_images` x `far` (at most 1).

    A stranger's best score is the max over every gallery image (`Gallery.person_scores`); when each image clears
    the threshold with probability `far`, the union bound gives images x far. People whose images look alike draw
    fewer false alarms (toward people x far); a threshold calibrated on few impostor pairs has an uncertain rate.
    """
    return min(1.0, far * gallery_images)


@dataclass(frozen=True)
class SearchResult:
    """One query's outcome: the top people by score (highest first), and the answer: the best person, or UNKNOWN_PERSON
    when the best score is below the threshold. `in_gallery`: the query photo is itself one of the gallery's images or
    a copy (its match is that image, not recognition)."""

    ranked: list[tuple[str, float]]
    answer: str
    best_score: float
    in_gallery: bool = False


class Gallery:
    """Known people's face embeddings: rows of an L2-normalised (N, D) matrix, several rows per person allowed.

    A person's score for a query is the highest cosine similarity between the query and any of that person's images
    (max, not mean: one good enrolment photo suffices, and adding photos never lowers a score). So a stranger meets
    every image: at a threshold calibrated per image pair, false alarms grow with images, not people
    (`false_alarm_bound`).
    """

    def __init__(self, embeddings: torch.Tensor | np.ndarray, names: Sequence[str]) -> None:
        self.embeddings = _unit_rows(embeddings, "gallery embeddings")
        if len(names) != self.embeddings.shape[0]:
            raise DataError(f"{self.embeddings.shape[0]} gallery embeddings but {len(names)} names")
        if UNKNOWN_PERSON in names:
            raise DataError(f"{UNKNOWN_PERSON!r} is reserved for the open-set answer and cannot name a gallery person")
        self.people: list[str] = list(dict.fromkeys(names))
        person_index = {name: index for index, name in enumerate(self.people)}
        self.row_person = torch.tensor([person_index[name] for name in names])

    def person_scores(self, query_embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(Q, P) float64 scores: per query, each person's max cosine over their images; columns follow `people`."""
        queries = _unit_rows(query_embeddings, "query embeddings")
        if queries.shape[1] != self.embeddings.shape[1]:
            raise DataError(f"query embeddings have {queries.shape[1]} dimensions, the gallery {self.embeddings.shape[1]}")
        cosines = queries @ self.embeddings.T
        scores = torch.full((len(queries), len(self.people)), -torch.inf, dtype=torch.float64)
        return scores.scatter_reduce(1, self.row_person.expand_as(cosines), cosines, reduce="amax")

    def search(self, query_embeddings: torch.Tensor | np.ndarray, threshold: float, top_k: int = 5) -> list[SearchResult]:
        """Per query: the `top_k` people by score (ties keep gallery order) and the open-set answer at `threshold`."""
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        scores = self.person_scores(query_embeddings)
        ranked_scores, ranked_people = scores.sort(dim=1, descending=True, stable=True)
        results = []
        for query_scores, query_people in zip(ranked_scores[:, :top_k].tolist(), ranked_people[:, :top_k].tolist()):
            ranked = [(self.people[person], score) for person, score in zip(query_people, query_scores)]
            best_name, best_score = ranked[0]
            results.append(SearchResult(ranked, best_name if best_score >= threshold else UNKNOWN_PERSON, best_score))
        return results


@dataclass(frozen=True)
class OpenSetRates:
    """Open-set identification at one threshold (the rates of face-search evaluations such as IJB and FRVT).

    Mated probes are photos of gallery people (not the enrolled photos); non-mated probes are photos of people absent
    from the gallery. `rank1`: mated probes whose best-scoring person is right, with no threshold (closed set).
    `detection_identification_rate` (DIR): mated probes answered with the right person (best person right and score
    >= threshold). `false_alarm_rate` (FPIR): non-mated probes answered with anyone (best score >= threshold)."""

    threshold: float
    rank1: float
    detection_identification_rate: float
    false_alarm_rate: float
    mated: int
    non_mated: int


def open_set_rates(gallery: Gallery, mated: torch.Tensor | np.ndarray, mated_people: Sequence[str],
                   non_mated: torch.Tensor | np.ndarray, threshold: float) -> OpenSetRates:
    """Rank-1, DIR and false-alarm rate of searching `mated` probes (of the named gallery people) and `non_mated`
    probes (of people absent from the gallery) at `threshold`."""
    missing = sorted(set(mated_people) - set(gallery.people))
    if missing:
        raise DataError(f"mated probes of people not in the gallery: {', '.join(missing[:5])}")
    if len(mated_people) != len(mated):
        raise DataError(f"{len(mated)} mated probe embeddings but {len(mated_people)} names")
    best_score, best_person = gallery.person_scores(mated).max(dim=1)
    right = best_person == torch.tensor([gallery.people.index(name) for name in mated_people])
    alarms = gallery.person_scores(non_mated).max(dim=1).values >= threshold
    identified = right & (best_score >= threshold)
    return OpenSetRates(threshold, float(right.double().mean()), float(identified.double().mean()),
                        float(alarms.double().mean()), len(mated_people), len(alarms))


def gallery_fingerprint(files: Iterable[tuple[str | Path, int, float]]) -> str:
    """A hex digest of (path, size in bytes, modification time) per gallery file, independent of their order:
    cached gallery embeddings are stale when it changes."""
    lines = sorted(f"{Path(path).as_posix()}\t{int(size)}\t{float(mtime)!r}" for path, size, mtime in files)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
