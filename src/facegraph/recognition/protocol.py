"""Verification metrics on pair similarity scores: the LFW 10-fold accuracy protocol, ROC, AUC and TAR at a FAR.

Throughout, a pair is *accepted* (predicted "same person") when its score is >= the threshold; `same` holds the
ground truth. Scores are cosine similarities, but any "higher means more alike" score works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegraph.errors import DataError


# Pairs scored per step: gathering both rows of every pair at once held 2 x pairs x dim float64s (16 GB for a gallery
# search's 2 million impostor pairs at dimension 512); this many keeps it to about 130 MB.
PAIRS_PER_STEP = 16_384


def pair_similarities(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair (rows `first[i]` and `second[i]` of unit-length embeddings), in float64."""
    scores = np.empty(len(first), dtype=np.float64)
    for start in range(0, len(first), PAIRS_PER_STEP):
        step = slice(start, start + PAIRS_PER_STEP)
        scores[step] = np.einsum("ij,ij->i", embeddings[first[step]].astype(np.float64),
                                 embeddings[second[step]].astype(np.float64))
    return scores


def _check_scores(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.ndim != 1 or scores.shape != same.shape:
        raise DataError(f"scores {scores.shape} and labels {same.shape} must be two 1-D arrays of one length")
    if not len(scores):
        raise DataError("no pair scores")
    if not np.isfinite(scores).all():
        raise DataError(f"{int((~np.isfinite(scores)).sum())} pair scores are not finite")
    return scores, same


def _check_both_kinds(same: np.ndarray) -> None:
    if same.all() or not same.any():
        raise DataError(f"need both matched and mismatched pairs, got {int(same.sum())} matched of {len(same)}")


def verification_accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided correctly when pairs scoring >= `threshold` are called "same"."""
    scores, same = _check_scores(scores, same)
    return float(((scores >= threshold) == same).mean())


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises verification accuracy on these pairs.

    Candidates are the midpoints between neighbouring distinct scores, plus min - 1 (accept all) and max + 1
    (reject all); tied scores always fall on one side. Among candidates of equal accuracy the lowest wins.
    """
    scores, same = _check_scores(scores, same)
    distinct = np.unique(scores)
    matched, mismatched = np.sort(scores[same]), np.sort(scores[~same])
    # Candidate k accepts exactly the scores >= cut[k]; the last cut (inf) accepts nothing.
    cuts = np.append(distinct, np.inf)
    correct = (len(matched) - np.searchsorted(matched, cuts, side="left")) + np.searchsorted(mismatched, cuts, side="left")
    best = int(np.argmax(correct))
    if best == 0:
        return float(distinct[0] - 1.0)
    if best == len(distinct):
        return float(distinct[-1] + 1.0)
    return float((distinct[best - 1] + distinct[best]) / 2)


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve: P(matched score > mismatched score) + 0.5 P(equal), over all matched x mismatched
    pairs (the Mann-Whitney U statistic divided by n_matched * n_mismatched)."""
    scores, same = _check_scores(scores, same)
    _check_both_kinds(same)
    mismatched = np.sort(scores[~same])
    matched = scores[same]
    below = np.searchsorted(mismatched, matched, side="left")
    equal = np.searchsorted(mismatched, matched, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (len(matched) * len(mismatched)))


@dataclass(frozen=True)
class RocCurve:
    """ROC points, one per distinct score (highest first) after a (0, 0) start at threshold +inf.

    Point i: accepting scores >= thresholds[i] gives false_accept_rates[i] of the mismatched pairs and
    true_accept_rates[i] of the matched pairs; the last point is (1, 1).
    """

    thresholds: np.ndarray
    false_accept_rates: np.ndarray
    true_accept_rates: np.ndarray


def roc_curve(scores: np.ndarray, same: np.ndarray) -> RocCurve:
    """The ROC curve for plotting (see RocCurve); needs both matched and mismatched pairs."""
    scores, same = _check_scores(scores, same)
    _check_both_kinds(same)
    thresholds = np.unique(scores)[::-1]
    matched, mismatched = np.sort(scores[same]), np.sort(scores[~same])
    true_accepts = len(matched) - np.searchsorted(matched, thresholds, side="left")
    false_accepts = len(mismatched) - np.searchsorted(mismatched, thresholds, side="left")
    return RocCurve(
        thresholds=np.concatenate([[np.inf], thresholds]),
        false_accept_rates=np.concatenate([[0.0], false_accepts / len(mismatched)]),
        true_accept_rates=np.concatenate([[0.0], true_accepts / len(matched)]),
    )


def threshold_at_far(mismatched_scores: np.ndarray, far: float) -> tuple[float, int]:
    """(threshold, false accepts): the lowest threshold at which at most floor(far * n) of the n mismatched
    (impostor) scores are accepted, and how many are. The threshold sits just above the (k+1)-th highest impostor
    score (k = floor(far * n)); with far >= 1 it is the lowest score, accepting all."""
    mismatched = np.sort(np.asarray(mismatched_scores, dtype=np.float64).ravel())[::-1]
    if not len(mismatched):
        raise DataError("no mismatched (impostor) scores to calibrate a threshold on")
    if not np.isfinite(mismatched).all():
        raise DataError(f"{int((~np.isfinite(mismatched)).sum())} impostor scores are not finite")
    if not 0.0 < far <= 1.0:
        raise DataError(f"a false-accept rate must lie in (0, 1], got {far}")
    allowed = int(np.floor(far * len(mismatched) + 1e-9))
    if allowed >= len(mismatched):
        return float(mismatched[-1]), len(mismatched)
    threshold = float(np.nextafter(mismatched[allowed], np.inf))
    return threshold, int((mismatched >= threshold).sum())


@dataclass(frozen=True)
class TarAtFar:
    """True-accept rate at a requested false-accept rate.

    `false_accepts` of `mismatched_pairs` are accepted at `threshold` (achieved FAR = their ratio, <= the requested
    one). `resolved` is False when there are fewer than 1 / far mismatched pairs: then not even one false accept is
    allowed and the requested FAR is not measurable, only "zero false accepts" is.
    """

    far: float
    tar: float
    threshold: float
    false_accepts: int
    mismatched_pairs: int
    resolved: bool

    @property
    def achieved_far(self) -> float:
        return self.false_accepts / self.mismatched_pairs


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> TarAtFar:
    """TAR at FAR: the fraction of matched pairs accepted at the threshold of `threshold_at_far` on the mismatched
    pairs' scores."""
    scores, same = _check_scores(scores, same)
    _check_both_kinds(same)
    mismatched = scores[~same]
    threshold, false_accepts = threshold_at_far(mismatched, far)
    return TarAtFar(
        far=far,
        tar=float((scores[same] >= threshold).mean()),
        threshold=threshold,
        false_accepts=false_accepts,
        mismatched_pairs=len(mismatched),
        resolved=len(mismatched) * far >= 1.0 - 1e-9,
    )


@dataclass(frozen=True)
class VerificationResult:
    """The k-fold verification protocol's outcome.

    fold_accuracies[i] is the accuracy on fold folds[i] at fold_thresholds[i], the best threshold of all other folds
    together. std_accuracy is the sample standard deviation over folds (ddof=1) and standard_error = std / sqrt(k),
    as the LFW README asks results to be reported; auc and roc cover all pairs pooled. With candidate scores (one row
    per setting of a preprocessing parameter), fold_candidates[i] is the row fold folds[i] was decided with and
    `scores` holds each pair's score from its fold's row; with one row both are trivial.
    """

    folds: np.ndarray
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray
    fold_candidates: np.ndarray
    scores: np.ndarray
    mean_accuracy: float
    std_accuracy: float
    standard_error: float
    auc: float
    roc: RocCurve


def verification_protocol(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> VerificationResult:
    """LFW view-2 protocol: for each fold, pick best_threshold on the other folds and measure accuracy on it.

    `scores` (N,) or (C, N): C candidate scorings of the same pairs (e.g. the photos cut at C centre crops). Each fold
    is then decided by the candidate whose best threshold is most accurate on the other folds, so a preprocessing
    parameter is chosen as the threshold is, never on the pairs it is measured on; ties go to the first candidate.
    """
    candidates = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if np.ndim(scores) not in (1, 2) or not candidates.shape[0]:
        raise DataError(f"scores must be (pairs,) or (candidates, pairs), got shape {np.shape(scores)}")
    for row in candidates:
        _check_scores(row, same)
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    if folds.shape != same.shape:
        raise DataError(f"fold ids {folds.shape} do not match the {len(same)} scores")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise DataError(f"the protocol needs at least 2 folds, got {len(fold_ids)}")
    thresholds, accuracies, chosen = [], [], []
    chosen_scores = candidates[0].copy()
    for fold in fold_ids:
        held_out = folds == fold
        fits = []
        for row in candidates:
            threshold = best_threshold(row[~held_out], same[~held_out])
            fits.append((verification_accuracy(row[~held_out], same[~held_out], threshold), threshold))
        best = max(range(len(fits)), key=lambda c: (fits[c][0], -c))
        chosen.append(best)
        thresholds.append(fits[best][1])
        chosen_scores[held_out] = candidates[best][held_out]
        accuracies.append(verification_accuracy(candidates[best][held_out], same[held_out], fits[best][1]))
    accuracies_array = np.array(accuracies)
    std = float(accuracies_array.std(ddof=1))
    return VerificationResult(
        folds=fold_ids,
        fold_accuracies=accuracies_array,
        fold_thresholds=np.array(thresholds),
        fold_candidates=np.array(chosen),
        scores=chosen_scores,
        mean_accuracy=float(accuracies_array.mean()),
        std_accuracy=std,
        standard_error=std / np.sqrt(len(fold_ids)),
        auc=roc_auc(chosen_scores, same),
        roc=roc_curve(chosen_scores, same),
    )
