"""The verification protocol on synthetic similarities with known answers and brute-force cross-checks."""

from __future__ import annotations

import numpy as np
import pytest

from facegraph.errors import DataError
from facegraph.recognition import best_threshold, roc_auc, roc_curve, tar_at_far, verification_protocol

# Three folds of two matched (M) and two mismatched (D) scores; the expected fold results are worked out by hand in
# test_hand_worked_three_folds.
HAND_SCORES = np.array([0.9, 0.8, 0.1, 0.6, 0.7, 0.4, 0.2, 0.3, 0.95, 0.5, 0.05, 0.45])
HAND_SAME = np.array([True, True, False, False] * 3)
HAND_FOLDS = np.repeat([0, 1, 2], 4)


def brute_best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Try every candidate threshold one by one; keep the first (lowest) of the most accurate."""
    distinct = sorted(set(scores.tolist()))
    candidates = [distinct[0] - 1.0] + [(low + high) / 2 for low, high in zip(distinct, distinct[1:])] + [distinct[-1] + 1.0]
    best, best_correct = None, -1
    for threshold in candidates:
        correct = sum(int((score >= threshold) == label) for score, label in zip(scores, same))
        if correct > best_correct:
            best, best_correct = threshold, correct
    return best


def test_perfectly_separable_scores_give_accuracy_and_auc_one() -> None:
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 300)
    scores = np.where(same, rng.uniform(0.5, 1.0, 600), rng.uniform(-1.0, 0.4, 600))
    result = verification_protocol(scores, same, np.repeat(np.arange(10), 60))
    assert np.array_equal(result.fold_accuracies, np.ones(10))
    assert result.mean_accuracy == 1.0 and result.std_accuracy == 0.0
    assert result.auc == 1.0
    assert all(scores[~same].max() < threshold < scores[same].min() for threshold in result.fold_thresholds)


def test_hand_worked_three_folds() -> None:
    # Held out fold 0: folds 1+2 sorted D.05 D.2 D.3 M.4 D.45 M.5 M.7 M.95; cuts below .4 and below .5 both get 7/8,
    # the lower (.35) wins; on fold 0 (M.9 M.8 D.1 D.6) it misses D.6 -> 0.75. Fold 1: folds 0+2 give 7/8 at .475
    # and .7 -> .475; fold 1 (M.7 M.4 D.2 D.3) misses M.4 -> 0.75. Fold 2: folds 0+1 give 7/8 at .35 and .65 -> .35;
    # fold 2 (M.95 M.5 D.05 D.45) misses D.45 -> 0.75 (the higher tie, .65, would have scored 1.0).
    result = verification_protocol(HAND_SCORES, HAND_SAME, HAND_FOLDS)
    assert result.folds.tolist() == [0, 1, 2]
    assert result.fold_thresholds == pytest.approx([0.35, 0.475, 0.35])
    assert result.fold_accuracies == pytest.approx([0.75, 0.75, 0.75])
    assert result.mean_accuracy == pytest.approx(0.75)
    # Matched scores beat 6, 6, 6, 4, 6, 5 of the 6 mismatched ones.
    assert result.auc == pytest.approx(33 / 36)


def test_a_preprocessing_candidate_is_chosen_on_the_other_folds_never_on_the_fold_itself() -> None:
    # Candidate 0 is right on 70 % of every fold; candidate 1 separates every fold perfectly except fold 3, where it
    # is exactly inverted. Each fold's choice sees only the other folds: folds != 3 see candidate 1 right on 8 of 9
    # folds (0.89 > 0.70) and fold 3 sees it perfect, so every fold takes candidate 1, and fold 3, decided blind to
    # its own inversion, scores 0.
    rng = np.random.default_rng(3)
    same = np.tile([True, False], 300)
    folds = np.repeat(np.arange(10), 60)
    separable = np.where(same, rng.uniform(0.6, 1.0, 600), rng.uniform(0.0, 0.4, 600))
    inverted = np.where(folds == 3, 1.0 - separable, separable)
    mediocre = np.where(rng.random(600) < 0.7, separable, 1.0 - separable)
    result = verification_protocol(np.stack([mediocre, inverted]), same, folds)
    assert result.fold_candidates.tolist() == [1] * 10
    assert result.fold_accuracies == pytest.approx([1.0, 1.0, 1.0, 0.0] + [1.0] * 6)
    assert np.array_equal(result.scores, inverted)
    # One candidate is the plain protocol, whichever way it is passed.
    alone, row = verification_protocol(mediocre, same, folds), verification_protocol(mediocre[None], same, folds)
    assert np.array_equal(alone.fold_accuracies, row.fold_accuracies) and alone.auc == row.auc
    assert alone.fold_candidates.tolist() == [0] * 10 and np.array_equal(alone.scores, mediocre)
    with pytest.raises(DataError, match="must be two 1-D arrays of one length"):
        verification_protocol(np.stack([mediocre, inverted])[:, :500], same, folds)


def test_best_threshold_edges_and_ties() -> None:
    assert best_threshold(np.array([0.2, 0.4]), np.array([False, True])) == pytest.approx(0.3)
    assert best_threshold(np.array([0.2, 0.4]), np.array([True, True])) == pytest.approx(-0.8)
    assert best_threshold(np.array([0.2, 0.4]), np.array([False, False])) == pytest.approx(1.4)
    # Tied scores of both kinds cannot be split: one of the two is always wrong.
    scores, same = np.array([0.5, 0.5, 0.1]), np.array([True, False, False])
    threshold = best_threshold(scores, same)
    assert threshold == pytest.approx(0.3)
    assert ((scores >= threshold) == same).sum() == 2


def test_seeded_gaussian_protocol_matches_brute_force() -> None:
    rng = np.random.default_rng(42)
    same = rng.random(400) < 0.5
    scores = np.round(np.where(same, rng.normal(0.5, 0.2, 400), rng.normal(0.2, 0.2, 400)), 2)  # rounding makes ties
    folds = rng.integers(0, 10, 400)
    result = verification_protocol(scores, same, folds)
    accuracies = []
    for fold in range(10):
        held_out = folds == fold
        threshold = brute_best_threshold(scores[~held_out], same[~held_out])
        assert result.fold_thresholds[fold] == pytest.approx(threshold)
        accuracies.append(np.mean([(score >= threshold) == label for score, label in zip(scores[held_out], same[held_out])]))
    assert result.fold_accuracies == pytest.approx(accuracies)
    assert result.std_accuracy == pytest.approx(np.std(accuracies, ddof=1))
    assert result.standard_error == pytest.approx(np.std(accuracies, ddof=1) / np.sqrt(10))
    matched, mismatched = scores[same], scores[~same]
    pairs_won = (matched[:, None] > mismatched[None, :]).sum() + 0.5 * (matched[:, None] == mismatched[None, :]).sum()
    assert result.auc == pytest.approx(pairs_won / (len(matched) * len(mismatched)))
    stats = pytest.importorskip("scipy.stats")
    assert result.auc == pytest.approx(stats.mannwhitneyu(matched, mismatched).statistic / (len(matched) * len(mismatched)))


def test_auc_counts_ties_half() -> None:
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert roc_auc(np.array([0.5, 0.7, 0.5, 0.1]), np.array([True, True, False, False])) == pytest.approx(3.5 / 4)
    assert roc_auc(np.array([0.1, 0.9]), np.array([True, False])) == 0.0


def test_roc_curve_points_match_counts_and_area() -> None:
    rng = np.random.default_rng(3)
    same = rng.random(300) < 0.4
    scores = np.round(rng.normal(same * 0.3, 0.2), 2)
    roc = roc_curve(scores, same)
    assert (roc.false_accept_rates[0], roc.true_accept_rates[0]) == (0.0, 0.0)
    assert (roc.false_accept_rates[-1], roc.true_accept_rates[-1]) == (1.0, 1.0)
    assert np.all(np.diff(roc.thresholds) < 0)
    for threshold, far, tar in zip(roc.thresholds[1:], roc.false_accept_rates[1:], roc.true_accept_rates[1:]):
        assert far == pytest.approx(np.mean(scores[~same] >= threshold))
        assert tar == pytest.approx(np.mean(scores[same] >= threshold))
    assert np.trapezoid(roc.true_accept_rates, roc.false_accept_rates) == pytest.approx(roc_auc(scores, same))


@pytest.mark.parametrize("far", [0.001, 0.01, 0.05, 0.3, 1.0])
def test_tar_at_far_matches_brute_force(far: float) -> None:
    rng = np.random.default_rng(11)
    same = rng.random(3000) < 0.3
    scores = np.round(np.where(same, rng.normal(0.6, 0.2, 3000), rng.normal(0.1, 0.2, 3000)), 3)
    mismatched, matched = scores[~same], scores[same]
    # The lowest candidate threshold (any distinct score, or +inf) whose false-accept rate stays within `far`.
    valid = [t for t in np.append(np.unique(scores), np.inf) if np.mean(mismatched >= t) <= far]
    lowest = min(valid)
    result = tar_at_far(scores, same, far)
    assert result.tar == pytest.approx(np.mean(matched >= lowest))
    assert result.false_accepts == int((mismatched >= lowest).sum())
    assert result.achieved_far <= far
    assert np.array_equal(scores >= result.threshold, scores >= lowest)
    assert result.mismatched_pairs == len(mismatched) and result.resolved


def test_tar_at_far_flags_an_unresolvable_rate() -> None:
    same = np.array([True] * 50 + [False] * 50)
    scores = np.concatenate([np.linspace(0.3, 1.0, 50), np.linspace(-0.5, 0.6, 50)])
    result = tar_at_far(scores, same, 0.01)  # 50 mismatched pairs cannot show a 1 % false-accept rate
    assert not result.resolved
    assert result.false_accepts == 0
    assert result.threshold > 0.6
    assert result.tar == pytest.approx(np.mean(scores[:50] > 0.6))
    assert tar_at_far(scores, same, 0.02).resolved


def test_bad_inputs_are_data_errors() -> None:
    with pytest.raises(DataError, match="at least 2 folds"):
        verification_protocol(HAND_SCORES, HAND_SAME, np.zeros(12, dtype=int))
    with pytest.raises(DataError, match="not finite"):
        best_threshold(np.array([0.1, np.nan]), np.array([True, False]))
    with pytest.raises(DataError, match="one length"):
        best_threshold(np.array([0.1, 0.2]), np.array([True]))
    with pytest.raises(DataError, match="both matched and mismatched"):
        roc_auc(np.array([0.1, 0.2]), np.array([True, True]))
    with pytest.raises(DataError, match="false-accept rate"):
        tar_at_far(HAND_SCORES, HAND_SAME, 0.0)


# Training-free baselines feeding the protocol ---------------------------------------------------------------------

from facegraph.errors import ConfigError  # noqa: E402
from facegraph.recognition import fit_pca, raw_pixel_embeddings  # noqa: E402


def test_raw_pixel_cosine_is_the_pixel_correlation() -> None:
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 1, size=(5, 3, 8, 8))
    embeddings = raw_pixel_embeddings(images)
    assert embeddings.shape == (5, 192)
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx(np.ones(5), abs=1e-6)
    assert embeddings @ embeddings.T == pytest.approx(np.corrcoef(images.reshape(5, -1)), abs=1e-5)
    # Brightness and contrast do not move an embedding; a flat image embeds as zeros.
    assert raw_pixel_embeddings(2.5 * images + 0.3) == pytest.approx(embeddings, abs=1e-6)
    assert not raw_pixel_embeddings(np.full((1, 12), 0.7)).any()


def test_pca_projection_matches_an_eigendecomposition_of_the_covariance() -> None:
    rng = np.random.default_rng(8)
    basis = np.linalg.qr(rng.normal(size=(40, 4)))[0].T  # 4 orthonormal axes in 40 dimensions
    train = rng.normal(size=(200, 4)) * np.array([5.0, 3.0, 2.0, 1.0]) @ basis + rng.normal(size=40)
    probe = rng.normal(size=(6, 4)) @ basis + 0.05 * rng.normal(size=(6, 40))
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(train, rowvar=False))
    top = np.argsort(eigenvalues)[::-1][:3]
    for whiten in (False, True):
        model = fit_pca(train.reshape(200, 1, 5, 8), components=3, whiten=whiten)
        embeddings = model.project(probe.reshape(6, 1, 5, 8))
        coordinates = (probe - train.mean(axis=0)) @ eigenvectors[:, top]
        if whiten:
            coordinates /= np.sqrt(eigenvalues[top])
        expected = coordinates / np.linalg.norm(coordinates, axis=1, keepdims=True)
        # Axis signs are arbitrary; the cosines between embeddings are not.
        assert embeddings @ embeddings.T == pytest.approx(expected @ expected.T, abs=1e-5)
    with pytest.raises(ConfigError, match="components"):
        fit_pca(train[:3], components=3)  # 3 centred images have rank 2


def test_baselines_verify_synthetic_faces_far_above_chance() -> None:
    rng = np.random.default_rng(12)
    people = rng.normal(size=(30, 1, 12, 12))
    photos = people[np.repeat(np.arange(30), 4)] + 0.6 * rng.normal(size=(120, 1, 12, 12))
    identities = np.repeat(np.arange(30), 4)
    first, second = rng.integers(0, 120, 2000), rng.integers(0, 120, 2000)
    kept = first != second
    first, second = first[kept], second[kept]
    same = identities[first] == identities[second]
    folds = np.arange(len(first)) % 10
    model = fit_pca(photos, components=20)
    for embeddings in (raw_pixel_embeddings(photos), model.project(photos)):
        scores = (embeddings[first] * embeddings[second]).sum(axis=1)
        result = verification_protocol(scores, same, folds)
        assert result.auc > 0.95


def test_pair_similarities_in_steps_equal_the_dot_products_of_every_pair(monkeypatch):
    from facegraph.recognition import protocol

    rng = np.random.default_rng(3)
    embeddings = rng.standard_normal((50, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    first, second = rng.integers(0, 50, 1000), rng.integers(0, 50, 1000)
    whole = np.einsum("ij,ij->i", embeddings[first].astype(np.float64), embeddings[second].astype(np.float64))
    monkeypatch.setattr(protocol, "PAIRS_PER_STEP", 64)  # 1,000 pairs in 16 steps, the last one short
    stepped = protocol.pair_similarities(embeddings, first, second)
    assert stepped.dtype == np.float64 and np.array_equal(stepped, whole)
    assert stepped[7] == pytest.approx(float(embeddings[first[7]].astype(np.float64) @ embeddings[second[7]]))
    assert protocol.pair_similarities(embeddings, first[:0], second[:0]).shape == (0,)
