"""Statistics for claims: each function checked against an independent computation or a hand-countable case."""

from __future__ import annotations

import itertools
import math
import statistics as pystats
from math import comb

import numpy as np
import pytest
import torch
from scipy import stats

from facegraph.analysis.statistics import (
    balanced_accuracy,
    binomial_interval,
    image_sampling_floor,
    interval_half_width,
    majority_rate,
    mann_whitney_u,
    mcnemar_exact,
    mean_std,
    paired_difference,
)
from facegraph.recognition import roc_auc


# --- binomial_interval (Clopper-Pearson) -------------------------------------------------------------------------

def test_clopper_pearson_matches_the_beta_quantile_formula():
    for correct, total in [(7, 20), (218, 417), (1, 3), (399, 417)]:
        low, high = binomial_interval(correct, total)
        assert low == pytest.approx(stats.beta.ppf(0.025, correct, total - correct + 1), abs=1e-9)
        assert high == pytest.approx(stats.beta.ppf(0.975, correct + 1, total - correct), abs=1e-9)


def test_clopper_pearson_textbook_values():
    # 5 of 10: the textbook exact interval 0.187 to 0.813.
    low, high = binomial_interval(5, 10)
    assert (round(low, 3), round(high, 3)) == (0.187, 0.813)
    # At the ends the bounds have a closed form: 0 of n -> [0, 1 - (alpha/2)^(1/n)], n of n -> [(alpha/2)^(1/n), 1].
    assert binomial_interval(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert binomial_interval(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    # 90 % is narrower than 95 %, and both contain the estimate.
    low90, high90 = binomial_interval(7, 20, confidence=0.90)
    low95, high95 = binomial_interval(7, 20)
    assert low95 < low90 < 7 / 20 < high90 < high95


def test_binomial_interval_rejects_impossible_counts():
    for correct, total in [(3, 2), (-1, 5), (0, 0), (2.5, 5)]:
        with pytest.raises(ValueError):
            binomial_interval(correct, total)
    with pytest.raises(ValueError):
        binomial_interval(1, 5, confidence=1.0)


# --- paired_difference ------------------------------------------------------------------------------------------

def test_paired_difference_reproduces_the_issue_numbers_and_a_manual_t_interval():
    aig = [47.72, 42.93, 53.24]
    resnet = [52.28, 45.56, 51.32]
    result = paired_difference(aig, resnet)
    differences = [a - b for a, b in zip(aig, resnet)]
    mean = sum(differences) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t_{0.975, 2 df} from the tables
    assert result.n == 3
    assert result.mean == pytest.approx(mean) and result.mean == pytest.approx(-1.76, abs=0.005)
    assert result.std == pytest.approx(std) and result.std == pytest.approx(3.33, abs=0.005)
    assert (result.low, result.high) == pytest.approx((mean - half, mean + half), abs=1e-6)
    assert round(result.low, 1) == -10.0 and round(result.high, 1) == 6.5
    assert result.differences == pytest.approx(tuple(differences))
    assert not result.supported and result.direction == 0
    assert result.verdict == "no supported difference"
    assert result.describe() == "-1.76 +- 3.33 (95 % interval -10.02 to +6.51, 3 seeds): no supported difference"


def test_paired_difference_supported_only_when_the_interval_excludes_zero():
    better = paired_difference([0.53, 0.54, 0.52, 0.55], [0.50, 0.51, 0.50, 0.51])
    assert better.low > 0 and better.supported and better.direction == 1 and better.verdict == "a > b"
    worse = paired_difference([0.50, 0.51, 0.50, 0.51], [0.53, 0.54, 0.52, 0.55])
    assert worse.high < 0 and worse.supported and worse.direction == -1 and worse.verdict == "a < b"
    # 90 % interval by the same formula.
    d = np.array([0.03, 0.03, 0.02, 0.04])
    half = stats.t.ppf(0.95, 3) * d.std(ddof=1) / 2
    narrower = paired_difference([0.53, 0.54, 0.52, 0.55], [0.50, 0.51, 0.50, 0.51], confidence=0.90)
    assert (narrower.low, narrower.high) == pytest.approx((d.mean() - half, d.mean() + half))


def test_paired_difference_with_one_seed_has_no_interval_and_says_so():
    result = paired_difference([0.60], [0.50])
    assert result.n == 1 and result.mean == pytest.approx(0.10)
    assert math.isnan(result.std) and math.isnan(result.low) and math.isnan(result.high)
    assert not result.has_interval and not result.supported and result.direction == 0
    assert result.verdict == "no interval from 1 seed"
    assert result.describe(scale=100) == "+10.00 (1 seed, no interval)"


def test_paired_difference_identical_over_seeds_has_no_interval():
    # Two seeds, each one image better on a 4-image test set: a zero-width t interval would call it supported.
    result = paired_difference([0.75, 0.5], [0.5, 0.25])
    assert result.n == 2 and result.mean == 0.25 and result.std == 0.0
    assert not result.has_interval and not result.supported and result.direction == 0
    assert result.verdict == "no interval: the 2 seeds gave the same difference"
    assert result.describe(scale=100) == "+25.00 (2 seeds, no interval: every one the same)"


def test_overlap_correction_widens_the_interval_as_nadeau_and_bengio_do():
    # The 6-fold LFW differences of docs/results.md; each fold tested 720 photos after training on 3,243.
    aig = [67.96, 70.87, 68.38, 71.84, 75.14, 70.56]
    resnet = [68.65, 70.87, 68.65, 73.23, 77.22, 71.81]
    plain = paired_difference(aig, resnet)
    corrected = paired_difference(aig, resnet, test_train_ratio=720 / 3243)
    d = np.subtract(aig, resnet)
    half = stats.t.ppf(0.975, 5) * d.std(ddof=1) * math.sqrt(1 / 6 + 720 / 3243)
    assert (corrected.low, corrected.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert (corrected.mean, corrected.std) == (plain.mean, plain.std)
    assert plain.supported and not corrected.supported  # the plain interval over folds is too narrow to trust
    assert "corrected for overlapping training sets" in corrected.describe(scale=1)
    with pytest.raises(ValueError, match="test_train_ratio"):
        paired_difference(aig, resnet, test_train_ratio=-0.1)


def test_paired_difference_rejects_unpaired_input():
    with pytest.raises(ValueError):
        paired_difference([0.5, 0.6], [0.5])
    with pytest.raises(ValueError):
        paired_difference([], [])
    with pytest.raises(ValueError):
        paired_difference([0.5, None], [0.5, 0.6])


# --- mcnemar_exact ------------------------------------------------------------------------------------------------

def test_mcnemar_ten_discordant_all_one_way():
    a = np.array([True] * 10 + [True] * 30 + [False] * 5)
    b = np.array([False] * 10 + [True] * 30 + [False] * 5)
    result = mcnemar_exact(a, b)
    assert (result.b01, result.b10, result.total, result.discordant) == (0, 10, 45, 10)
    assert result.p_value == pytest.approx(2 * 0.5 ** 10)
    assert result.significant() and result.accuracy_difference == pytest.approx(10 / 45)
    # Swapping the models swaps the counts, not the p-value.
    swapped = mcnemar_exact(b, a)
    assert (swapped.b01, swapped.b10) == (10, 0) and swapped.p_value == pytest.approx(result.p_value)


def test_mcnemar_hand_counted_two_against_eight():
    # b01 = 2 (a wrong, b right), b10 = 8: p = 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024.
    a = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    b = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    result = mcnemar_exact(a, b)
    assert (result.b01, result.b10) == (2, 8)
    assert result.p_value == pytest.approx(2 * sum(comb(10, k) for k in range(3)) / 2 ** 10)
    assert not result.significant()


def test_paired_accuracy_interval_hand_computed():
    # d = (8 - 2) / 12 = 0.5; variance (10 - 6^2 / 12) / 12^2 = 7 / 144; 95 %: 0.5 +- 1.959964 * sqrt(7) / 12.
    result = mcnemar_exact([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    low, high = result.difference_interval()
    assert low == pytest.approx(0.5 - 1.959964 * 7 ** 0.5 / 12, abs=1e-6)
    assert high == pytest.approx(0.5 + 1.959964 * 7 ** 0.5 / 12, abs=1e-6)
    # Balanced disagreement: centred on 0, and wider at 99 % than at 95 %.
    balanced = mcnemar_exact([1, 0] * 50, [0, 1] * 50)
    assert balanced.difference_interval() == pytest.approx((-0.1959964, 0.1959964), abs=1e-6)  # sqrt(100) / 100
    assert balanced.difference_interval(0.99)[1] > balanced.difference_interval()[1]
    assert mcnemar_exact([1, 1], [1, 1]).difference_interval() == (0.0, 0.0)


def test_interval_half_width_is_the_one_paired_difference_uses():
    aig, resnet = [67.96, 70.87, 68.38, 71.84, 75.14, 70.56], [68.65, 70.87, 68.65, 73.23, 77.22, 71.81]
    for ratio in (0.0, 720 / 3243):
        d = paired_difference(aig, resnet, test_train_ratio=ratio)
        assert interval_half_width(d.std, d.n, test_train_ratio=ratio) == pytest.approx((d.high - d.low) / 2)
    with pytest.raises(ValueError, match="at least 2"):
        interval_half_width(1.0, 1)
    for std, ratio, named in ((-1.0, 0.0, "std"), (math.nan, 0.0, "std"), (1.0, -0.1, "test_train_ratio"),
                              (1.0, math.inf, "test_train_ratio")):
        with pytest.raises(ValueError, match=named):
            interval_half_width(std, 5, test_train_ratio=ratio)


def test_image_sampling_floor_predicts_the_spread_of_differences_on_disjoint_test_sets():
    # Two fixed "models" answer each image right with probabilities 0.75 and 0.70 (correlated through a shared
    # difficulty), so every fold's difference varies only because the fold holds other images. 4,000 folds of 300
    # images: the floor's std from each fold's McNemar counts must match the std of the differences actually seen.
    rng = np.random.default_rng(0)
    tests, differences = [], []
    for _ in range(4000):
        difficulty = rng.random(300)
        a, b = difficulty < 0.75, (difficulty + 0.1 * rng.standard_normal(300)) < 0.70
        tests.append(mcnemar_exact(a, b))
        differences.append(a.mean() - b.mean())
    floor = image_sampling_floor(tests)
    assert floor.std == pytest.approx(np.std(differences, ddof=1), rel=0.05)
    # Per fold, the variance is the Wald variance behind difference_interval.
    first = tests[0]
    assert first.difference_variance == pytest.approx(
        (first.discordant - (first.b10 - first.b01) ** 2 / first.total) / first.total ** 2)
    # The half-width is paired_difference's for differences of that std, corrected like the measured interval.
    assert floor.half_width == pytest.approx(stats.t.ppf(0.975, 3999) * floor.std * math.sqrt(1 / 4000))
    corrected = image_sampling_floor(tests[:5], test_train_ratio=0.25)
    assert corrected.half_width == pytest.approx(interval_half_width(corrected.std, 5, test_train_ratio=0.25))
    with pytest.raises(ValueError, match="at least 2 folds"):
        image_sampling_floor(tests[:1])


def test_mcnemar_without_discordant_pairs_is_one():
    same = np.array([True, False, True, True])
    result = mcnemar_exact(same, same.copy())
    assert (result.b01, result.b10, result.p_value) == (0, 0, 1.0)
    balanced = mcnemar_exact([1, 0, 1, 0], [0, 1, 0, 1])
    assert balanced.p_value == 1.0  # 2 against 2: as balanced as it gets


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])
    with pytest.raises(ValueError):
        mcnemar_exact([0, 2], [1, 0])


# --- mann_whitney_u -----------------------------------------------------------------------------------------------

def _pairwise_u(a, b):
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in itertools.product(a, b))


def test_mann_whitney_u_is_the_pairwise_count():
    generator = np.random.default_rng(0)
    a, b = generator.integers(0, 8, 40), generator.integers(0, 6, 25)
    test = mann_whitney_u(a, b)
    assert test.u == pytest.approx(_pairwise_u(a, b))
    assert test.auc == pytest.approx(_pairwise_u(a, b) / (40 * 25))
    assert test.auc == roc_auc(np.concatenate([a, b]), np.arange(65) < 40)  # a as the matched scores
    assert mann_whitney_u(b, a).u == pytest.approx(40 * 25 - test.u)
    assert mann_whitney_u(b, a).p_two_sided == pytest.approx(test.p_two_sided)


def test_mann_whitney_p_value_against_a_worked_example():
    # No ties, n = 4 + 4, complete separation: U = 16, mean 8, variance 4 * 4 * 9 / 12 = 12;
    # z = (16 - 8 - 0.5) / sqrt(12) with the continuity correction.
    test = mann_whitney_u(np.array([5, 6, 7, 8]), np.array([1, 2, 3, 4]))
    z = 7.5 / math.sqrt(12)
    assert (test.u, test.auc) == (16.0, 1.0)
    assert test.z == pytest.approx(z)
    assert test.p_two_sided == pytest.approx(math.erfc(z / math.sqrt(2)))
    identical = mann_whitney_u(np.array([3, 3]), np.array([3, 3, 3]))
    assert identical.auc == 0.5 and math.isnan(identical.p_two_sided)
    assert math.isnan(mann_whitney_u(np.array([1, 2]), np.array([])).u)


# --- mean_std -----------------------------------------------------------------------------------------------------

def test_mean_std_is_the_sample_std_ignoring_missing_values():
    values = [52.28, None, 45.56, 51.32]
    mean, std = mean_std(values)
    assert mean == pytest.approx(pystats.fmean([52.28, 45.56, 51.32]))
    assert std == pytest.approx(pystats.stdev([52.28, 45.56, 51.32]))
    assert mean_std([52.28, 45.56, 51.32], ddof=0)[1] == pytest.approx(pystats.pstdev([52.28, 45.56, 51.32]))
    assert mean_std([None, 3.5]) == (3.5, None)  # one value has no sample std ...
    assert mean_std([3.5], ddof=0) == (3.5, 0.0)  # ... but a population of one has no spread
    assert mean_std([]) == (None, None) and mean_std([None, None]) == (None, None)


def test_mean_std_accepts_arrays_and_tensors():
    values = [1.0, 2.0, 4.0]
    expected = (pystats.fmean(values), pystats.stdev(values))
    assert mean_std(np.array(values)) == pytest.approx(expected)
    assert mean_std(torch.tensor(values)) == pytest.approx(expected)
    assert mean_std(np.array([1.0, None, 2.0, 4.0], dtype=object)) == pytest.approx(expected)
    assert mean_std(x for x in values) == pytest.approx(expected)


# --- balanced_accuracy, majority_rate -------------------------------------------------------------------------------

def test_balanced_accuracy_hand_case():
    truth = [0, 0, 0, 0, 1, 1, -1, -1]
    predicted = [0, 0, 0, 1, 1, 0, 1, 0]
    # Label 0: 3 of 4 recalled; label 1: 1 of 2; unknown images ignored -> (0.75 + 0.5) / 2.
    assert balanced_accuracy(truth, predicted, num_labels=2) == pytest.approx(0.625)
    # Labels absent from the truth do not count (label 2 of 3 has no image).
    assert balanced_accuracy(truth, predicted, num_labels=3) == pytest.approx(0.625)
    # A predicted -1 is wrong.
    assert balanced_accuracy([0, 1], [-1, 1], num_labels=2) == pytest.approx(0.5)


def test_always_answering_the_majority_scores_its_rate_but_balanced_chance():
    truth = np.array([0] * 86 + [1] * 14 + [-1] * 7)  # LFW-like: 86 % male among the known
    always_male = np.zeros_like(truth)
    assert majority_rate(truth) == pytest.approx(0.86)
    assert balanced_accuracy(truth, always_male, num_labels=2) == pytest.approx(0.5)
    assert majority_rate(torch.tensor([2, 2, 1, -1])) == pytest.approx(2 / 3)


def test_read_out_scores_without_known_labels_are_none():
    assert balanced_accuracy([-1, -1], [0, 1], num_labels=2) is None
    assert majority_rate([-1, -1]) is None
    assert majority_rate([]) is None


def test_balanced_accuracy_rejects_bad_codes():
    with pytest.raises(ValueError):
        balanced_accuracy([0, 2], [0, 1], num_labels=2)
    with pytest.raises(ValueError):
        balanced_accuracy([0, 1], [0], num_labels=2)
    with pytest.raises(ValueError):
        majority_rate([0, -2])
