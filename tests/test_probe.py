"""The cross-validated linear probe: folds by identity, recovers what is linearly there, nothing more."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from facegraph.analysis.probe import _softmax_loss, fit_softmax, grouped_folds, linear_probe


def _identities(people: int, photos: int) -> np.ndarray:
    return np.repeat(np.arange(people), photos)


# --- grouped_folds ----------------------------------------------------------------------------------------------

def test_grouped_folds_never_put_one_identity_in_two_folds():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 37, size=500)  # uneven numbers of photos per person
    parts = grouped_folds(groups, folds=5, seed=0)
    assert len(parts) == 5
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(500))  # a partition of the images
    for i, test in enumerate(parts):
        train = np.setdiff1d(np.arange(500), test)
        assert not set(groups[test]) & set(groups[train]), f"fold {i} shares an identity between train and test"
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= np.bincount(groups).max()  # balanced up to one person


def test_grouped_folds_are_deterministic_with_the_seed():
    groups = np.array([f"person{i % 23}" for i in range(230)])  # string ids work too
    first = grouped_folds(groups, folds=4, seed=7)
    again = grouped_folds(groups, folds=4, seed=7)
    other = grouped_folds(groups, folds=4, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_grouped_folds_with_fewer_groups_than_folds():
    parts = grouped_folds([5, 5, 9, 9, 9], folds=5)
    assert len(parts) == 2
    assert sorted(map(tuple, parts)) == [(0, 1), (2, 3, 4)]
    with pytest.raises(ValueError):
        grouped_folds([1, 1, 1], folds=5)
    with pytest.raises(ValueError):
        grouped_folds([1, 2, 3], folds=1)


# --- the softmax regression -----------------------------------------------------------------------------------------

def test_softmax_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 5))
    targets = np.eye(3)[rng.integers(0, 3, size=40)]
    parameters = rng.normal(size=5 * 3 + 3)
    error = optimize.check_grad(lambda p: _softmax_loss(p, features, targets, 0.1)[0],
                                lambda p: _softmax_loss(p, features, targets, 0.1)[1], parameters)
    assert error < 1e-5


def test_fit_softmax_reaches_a_stationary_point():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 4))
    codes = (features[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    weights, bias = fit_softmax(features, codes, classes=2, l2=0.01)
    _, gradient = _softmax_loss(np.concatenate([weights.ravel(), bias]), features, np.eye(2)[codes], 0.01)
    assert np.abs(gradient).max() < 1e-4
    assert weights[0, 1] - weights[0, 0] > 1.0  # the informative feature points to label 1


# --- linear_probe -------------------------------------------------------------------------------------------------

def test_probe_recovers_a_linearly_separable_label():
    rng = np.random.default_rng(0)
    groups = _identities(60, 10)
    features = rng.normal(size=(600, 8))
    score = features @ np.array([1.0, -2.0, 0.5, 0, 0, 1.0, 0, 0])
    features, groups, score = features[np.abs(score) > 0.3], groups[np.abs(score) > 0.3], score[np.abs(score) > 0.3]
    labels = (score > 0).astype(int)
    result = linear_probe(features, labels, groups, folds=5, seed=0)
    assert result is not None
    assert result.accuracy >= 0.95 and result.balanced_accuracy >= 0.95
    assert result.folds == 5 and len(result.fold_accuracies) == 5 and min(result.fold_accuracies) >= 0.9
    assert result.images == len(labels) and result.labels == 2


def test_probe_recovers_a_three_label_attribute_from_gate_like_vectors():
    rng = np.random.default_rng(2)
    groups = _identities(45, 8)
    person_label = rng.integers(0, 3, size=45)
    labels = person_label[groups]
    # Binary gates: gate 0 opens for label 1, gate 1 for label 2 (each 90 % of the time), six gates are noise.
    gates = (rng.random((360, 8)) < 0.5).astype(float)
    gates[:, 0] = np.where(labels == 1, rng.random(360) < 0.9, rng.random(360) < 0.1)
    gates[:, 1] = np.where(labels == 2, rng.random(360) < 0.9, rng.random(360) < 0.1)
    result = linear_probe(gates, labels, groups)
    assert result is not None and result.labels == 3
    assert result.accuracy > 0.75 and result.balanced_accuracy > 0.75
    assert result.accuracy > result.majority_rate + 0.3


def test_probe_sits_near_chance_on_random_labels():
    rng = np.random.default_rng(1)
    groups = _identities(100, 10)
    features = rng.normal(size=(1000, 10))
    labels = rng.integers(0, 2, size=1000)
    result = linear_probe(features, labels, groups, folds=5, seed=0)
    assert result is not None
    assert abs(result.balanced_accuracy - 0.5) < 0.06
    assert abs(result.accuracy - 0.5) < 0.06


def test_probe_cannot_score_by_recognising_people_it_has_seen():
    # Each person has a distinctive feature vector and a random label: only memorising people scores above chance.
    rng = np.random.default_rng(4)
    people, photos = 60, 6
    groups = _identities(people, photos)
    person_vector = rng.normal(size=(people, 80))
    features = person_vector[groups] + 0.1 * rng.normal(size=(people * photos, 80))
    labels = rng.permutation(np.arange(people) % 2)[groups]
    grouped = linear_probe(features, labels, groups)
    leaky = linear_probe(features, labels, np.arange(people * photos))  # every photo its own "identity"
    assert leaky is not None and leaky.accuracy > 0.95  # the leak this test would catch
    assert grouped is not None and grouped.accuracy < 0.7  # 60 people: chance is 0.5 +- 0.065


def test_probe_leaves_unknown_labels_out_and_is_deterministic():
    rng = np.random.default_rng(5)
    groups = _identities(40, 5)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] > 0).astype(int)
    labels[::4] = -1
    first = linear_probe(features, labels, groups, seed=3)
    assert first is not None and first.images == int((labels >= 0).sum())
    assert first == linear_probe(features, labels, groups, seed=3)


def test_a_label_missing_from_a_training_fold_counts_as_wrong():
    rng = np.random.default_rng(6)
    groups = _identities(20, 6)
    features = rng.normal(size=(120, 2))
    labels = (features[:, 0] > 0).astype(int)
    labels[groups == 0] = 2  # only person 0 carries label 2: never seen in training when person 0 is tested
    features[groups == 0] = [10.0, 10.0]
    result = linear_probe(features, labels, groups)
    assert result is not None and result.labels == 3
    assert result.balanced_accuracy <= 2 / 3 + 1e-9  # label 2 is recalled 0 times
    assert result.accuracy <= 1 - 6 / 120 + 1e-9


def test_a_training_part_with_one_label_predicts_that_label():
    # Two people, one label each: each fold trains on the other person only, so every answer is wrong.
    features = np.arange(8, dtype=float).reshape(8, 1)
    result = linear_probe(features, [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1])
    assert result is not None and result.folds == 2
    assert result.accuracy == 0.0 and result.fold_accuracies == (0.0, 0.0) and result.balanced_accuracy == 0.0


def test_probe_returns_none_when_nothing_can_be_measured():
    features = np.random.default_rng(0).normal(size=(12, 3))
    groups = _identities(4, 3)
    assert linear_probe(features, np.zeros(12, dtype=int), groups) is None  # one label
    assert linear_probe(features, -np.ones(12, dtype=int), groups) is None  # nothing known
    assert linear_probe(features, np.arange(12) % 2, np.zeros(12)) is None  # one identity
    assert linear_probe(features, np.array([0, 1, 0] + [-1] * 9), groups) is None  # known labels on one person


def test_probe_rejects_malformed_input():
    features = np.zeros((6, 2))
    with pytest.raises(ValueError):
        linear_probe(features, [0, 1, 0], [0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError):
        linear_probe(features[:, 0], [0, 1] * 3, [0, 1, 2] * 2)
    with pytest.raises(ValueError):
        linear_probe(features, [0, 1, 0, 1, 0, -3], [0, 1, 2] * 2)
    with pytest.raises(ValueError):
        linear_probe(np.full((6, 2), np.nan), [0, 1] * 3, [0, 1, 2] * 2)
