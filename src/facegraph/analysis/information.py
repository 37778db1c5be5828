"""How much a gate tells about a feature: plug-in mutual information I(gate; label) in bits, and its chance level.

The plug-in estimate replaces probabilities by observed frequencies. It is biased upwards on small samples (by
about (|gate values| - 1)(|labels| - 1) / (2 N ln 2) bits), and the largest of k such estimates more so, so the
scores of a feature come with one chance level: a high quantile, over label shuffles that destroy any real
dependence, of the LARGEST I of any gate. Labels belong to people, so the shuffles move a person's label with all of
that person's images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def entropy_bits(codes: np.ndarray) -> float:
    """Plug-in Shannon entropy H(X) in bits of a 1-D array of discrete values."""
    _, counts = np.unique(np.asarray(codes), return_counts=True)
    probabilities = counts / counts.sum()
    return float(-(probabilities * np.log2(probabilities)).sum())


ROUNDING_BITS = 1e-12
CHANCE_QUANTILE = 0.95  # of the largest I under shuffled labels: about 5 % false alarms per feature
CHANCE_ROUNDS = 200  # label shuffles behind that quantile


def _information_from_counts(joint_counts: np.ndarray) -> np.ndarray:
    """I(X; Y) in bits from joint counts (..., |X|, |Y|); empty cells contribute 0 (0 log 0 = 0)."""
    total = joint_counts.sum(axis=(-2, -1), keepdims=True)
    joint = joint_counts / total
    marginal_x = joint.sum(axis=-1, keepdims=True)
    marginal_y = joint.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = joint * np.log2(joint / (marginal_x * marginal_y))
    bits = np.nan_to_num(terms, nan=0.0).sum(axis=(-2, -1))
    # I >= 0; independent counts sum to 0 only up to rounding (+-1e-17), which must not read as "some information".
    return np.where(np.abs(bits) < ROUNDING_BITS, 0.0, bits)


def _gate_label_counts(gates: np.ndarray, one_hot_labels: np.ndarray) -> np.ndarray:
    """(k, 2, p) joint counts of (gate closed/open, label) for every gate at once."""
    opened = gates.T @ one_hot_labels
    closed = (1.0 - gates).T @ one_hot_labels
    return np.stack([closed, opened], axis=1)


def _one_hot(codes: np.ndarray, num_labels: int) -> np.ndarray:
    return np.eye(num_labels)[codes]


def _checked(gates: np.ndarray, codes: np.ndarray, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    gates = np.asarray(gates, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    if gates.ndim != 2 or codes.shape != (gates.shape[0],):
        raise ValueError(f"expected gates (N, k) and label codes (N,), got {gates.shape} and {codes.shape}")
    if len(codes) and (codes.min() < 0 or codes.max() >= num_labels):
        raise ValueError(f"label codes must lie in 0..{num_labels - 1} (drop unknown labels first)")
    if not np.isin(gates, (0.0, 1.0)).all():
        raise ValueError("gate values must be 0 or 1")
    return gates, codes


def gate_feature_information(gates: np.ndarray, codes: np.ndarray, num_labels: int) -> np.ndarray:
    """(k,) plug-in I(gate_j; label) in bits for each of the k gates; `gates` (N, k) 0/1, `codes` (N,) in 0..p-1."""
    gates, codes = _checked(gates, codes, num_labels)
    if len(codes) == 0:
        return np.zeros(gates.shape[1])
    return _information_from_counts(_gate_label_counts(gates, _one_hot(codes, num_labels)))


@dataclass(frozen=True)
class ChanceLevel:
    """The family-wise chance level of one feature's per-gate information."""

    bits: float  # the `quantile` of max_j I(gate_j; shuffled labels) over `rounds` shuffles
    quantile: float
    rounds: int
    by_person: bool  # True: labels were permuted among people; False: among images


def _labels_of_people(codes: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(label per person, person index per image) when all images of each person share one label, else None."""
    _, person_of_image = np.unique(identities, return_inverse=True)
    person_of_image = person_of_image.reshape(-1)
    labels = np.zeros(person_of_image.max() + 1, dtype=np.int64)
    labels[person_of_image] = codes
    if np.any(labels[person_of_image] != codes):
        return None
    return labels, person_of_image


def shuffled_max_information_quantile(
    gates: np.ndarray, codes: np.ndarray, num_labels: int, *, identities: np.ndarray | None = None,
    rounds: int = CHANCE_ROUNDS, quantile: float = CHANCE_QUANTILE, seed: int = 0,
) -> ChanceLevel:
    """Chance level for all k gates at once: the `quantile` over `rounds` label shuffles of max_j I(gate_j; labels).

    If no gate knows anything about the feature, the chance that any gate's I exceeds it is about 1 - quantile: a
    per-gate level would call the best of k unrelated gates informative far more often. With `identities` (N,) and
    one label per person, the shuffles permute the person -> label map, keeping each person's images together: gates
    that only tell people apart then stay at chance, which per-image shuffles (the fallback otherwise) would not.
    """
    gates, codes = _checked(gates, codes, num_labels)
    if len(codes) == 0 or gates.shape[1] == 0:
        return ChanceLevel(0.0, quantile, rounds, False)
    people = None
    if identities is not None:
        identities = np.asarray(identities)
        if identities.shape != codes.shape:
            raise ValueError(f"expected identities of shape {codes.shape}, got {identities.shape}")
        people = _labels_of_people(codes, identities)
    # Per-image shuffles are the same permutation with every image its own "person".
    person_labels, person_of_image = people if people is not None else (codes, np.arange(len(codes)))
    generator = np.random.default_rng(seed)
    largest = [
        _information_from_counts(_gate_label_counts(
            gates, _one_hot(person_labels[generator.permutation(len(person_labels))][person_of_image], num_labels),
        )).max()
        for _ in range(rounds)
    ]
    return ChanceLevel(float(np.quantile(largest, quantile)), quantile, rounds, people is not None)
