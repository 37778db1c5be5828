"""A cross-validated linear probe: how much of an attribute a linear read-out can find in the gate vector.

Eq. 5 reads an attribute from the gates with a fixed rule (nearest label mask or per-label mean gate vector). The
probe fits the rule instead, to show how much more a linear read-out finds: a multinomial logistic regression
(softmax, L2 penalty) fitted on standardised gate vectors, scored on held-out people. It is an estimate, not a bound:
on people it has not seen it can score below the majority label, which is reported beside it. Folds are split by identity, so no person is in
both the training and the test part of a fold: the probe cannot score by recognising faces it has seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from facegraph.analysis.statistics import balanced_accuracy, majority_rate
from facegraph.data.attributes import UNKNOWN_CODE


@dataclass(frozen=True)
class ProbeResult:
    """Out-of-fold scores of the linear probe, pooled over folds (every known image is tested exactly once).

    accuracy: share of known images whose label the probe predicted; balanced_accuracy: mean per-label recall;
    majority_rate: accuracy of always answering the most frequent label (the floor to beat); folds: number of
    folds used (fewer than asked when there are fewer identities); fold_accuracies: accuracy on each fold's test
    part; images: known images scored; labels: labels present among them.
    """

    accuracy: float
    balanced_accuracy: float
    majority_rate: float
    folds: int
    fold_accuracies: tuple[float, ...]
    images: int
    labels: int


def grouped_folds(groups: Sequence | np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test indices of each fold of a grouped K-fold split: every group (identity) lies in exactly one fold.

    Groups are shuffled with `seed`, then placed largest first into the fold with the fewest images so far, so
    folds hold similar numbers of images. Uses min(folds, number of groups) folds; the same seed gives the same
    split. Each returned array is sorted; together they partition range(len(groups)).
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"expected 1-D group ids, got shape {groups.shape}")
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(unique) < 2:
        raise ValueError(f"need at least 2 groups to split into folds, got {len(unique)}")
    folds = min(folds, len(unique))
    order = np.random.default_rng(seed).permutation(len(unique))
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of_group = np.empty(len(unique), dtype=np.int64)
    fold_sizes = np.zeros(folds, dtype=np.int64)
    for group in order:
        fold = int(np.argmin(fold_sizes))
        fold_of_group[group] = fold
        fold_sizes[fold] += counts[group]
    fold_of_item = fold_of_group[inverse.ravel()]
    return [np.flatnonzero(fold_of_item == fold) for fold in range(folds)]


def _softmax_loss(parameters: np.ndarray, features: np.ndarray, targets: np.ndarray,
                  l2: float) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of a softmax regression plus (l2 / 2) ||W||^2 (bias not penalised), and its gradient.

    parameters packs W (d, C) then b (C); targets are one-hot (N, C).
    """
    n, d = features.shape
    classes = targets.shape[1]
    weights = parameters[: d * classes].reshape(d, classes)
    bias = parameters[d * classes:]
    logits = features @ weights + bias
    log_probabilities = logits - special.logsumexp(logits, axis=1, keepdims=True)
    loss = -float((targets * log_probabilities).sum()) / n + 0.5 * l2 * float((weights ** 2).sum())
    residual = (np.exp(log_probabilities) - targets) / n
    gradient = np.concatenate([(features.T @ residual + l2 * weights).ravel(), residual.sum(axis=0)])
    return loss, gradient


def fit_softmax(features: np.ndarray, codes: np.ndarray, classes: int, l2: float = 1e-3,
                max_iterations: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with an L2 penalty, fitted by L-BFGS (scipy.optimize.minimize).

    features (N, d), codes (N,) in 0..classes-1. Minimises mean cross-entropy + (l2 / 2) ||W||^2 from zero
    weights; returns W (d, classes) and b (classes,).
    """
    n, d = features.shape
    targets = np.eye(classes)[codes]
    result = optimize.minimize(_softmax_loss, np.zeros(d * classes + classes), args=(features, targets, l2),
                               jac=True, method="L-BFGS-B", options={"maxiter": max_iterations})
    return result.x[: d * classes].reshape(d, classes), result.x[d * classes:]


def _predict_fold(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, l2: float) -> np.ndarray:
    """Labels predicted for test_x by a probe fitted on (train_x, train_y), features standardised on train."""
    present = np.unique(train_y)
    if len(present) == 1:  # a training part with one label: the best linear rule answers it everywhere
        return np.full(len(test_x), present[0])
    mean = train_x.mean(axis=0)
    scale = train_x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant gate carries nothing; leave it at zero rather than divide by zero
    weights, bias = fit_softmax((train_x - mean) / scale, np.searchsorted(present, train_y), len(present), l2)
    return present[np.argmax(((test_x - mean) / scale) @ weights + bias, axis=1)]


def linear_probe(features: np.ndarray, labels: Sequence[int] | np.ndarray, groups: Sequence | np.ndarray,
                 folds: int = 5, seed: int = 0, l2: float = 1e-3) -> ProbeResult | None:
    """Cross-validated linear probe of `labels` from `features`, with folds split by identity.

    features (N, k): e.g. each image's gate vector; labels (N,): label codes, -1 for unknown (those images are
    left out); groups (N,): identity of each image. The known images are split by grouped_folds(groups, folds,
    seed); on each fold a softmax regression (fit_softmax, L2 strength l2 on standardised features) is fitted on
    the other folds and predicts the held-out people. A label absent from a fold's training part cannot be
    predicted there, so its test images count as wrong. Returns None when nothing can be measured: fewer than two
    labels or fewer than two identities among the known images.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    g = np.asarray(groups)
    if x.ndim != 2 or y.shape != (x.shape[0],) or g.shape != (x.shape[0],):
        raise ValueError(f"expected features (N, k), labels (N,) and groups (N,), got {x.shape}, {y.shape} and "
                         f"{g.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite numbers")
    if len(y) and not np.array_equal(y, np.round(y)):
        raise ValueError("labels must be whole-number codes (-1 for unknown)")
    y = y.astype(np.int64)
    if len(y) and y.min() < UNKNOWN_CODE:
        raise ValueError(f"label codes must be >= 0 or {UNKNOWN_CODE} (unknown), got {y.min()}")
    known = y != UNKNOWN_CODE
    x, y, g = x[known], y[known], g[known]
    if len(np.unique(y)) < 2 or len(np.unique(g)) < 2:
        return None
    predicted = np.empty_like(y)
    fold_accuracies = []
    test_parts = grouped_folds(g, folds, seed)
    for test in test_parts:
        train = np.ones(len(y), dtype=bool)
        train[test] = False
        predicted[test] = _predict_fold(x[train], y[train], x[test], l2)
        fold_accuracies.append(float((predicted[test] == y[test]).mean()))
    return ProbeResult(accuracy=float((predicted == y).mean()),
                       balanced_accuracy=float(balanced_accuracy(y, predicted, int(y.max()) + 1)),
                       majority_rate=float(majority_rate(y)), folds=len(test_parts),
                       fold_accuracies=tuple(fold_accuracies), images=len(y), labels=len(np.unique(y)))
