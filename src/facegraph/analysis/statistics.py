"""Statistics that let a result carry a claim: intervals, paired differences over seeds, paired tests on images.

Pure functions over plain numbers and arrays (numpy, scipy.stats); nothing here reads run directories.

- binomial_interval: exact (Clopper-Pearson) interval of one accuracy measured on `total` test images.
- paired_difference: per-seed differences a - b of two models trained with the same seeds, their mean, sample std
  and t-based interval; a finding is `supported` only when that interval excludes zero. Over cross-validation
  folds, whose training sets overlap, the interval can be widened by Nadeau and Bengio's correction.
- mcnemar_exact: McNemar's exact test on two models' right/wrong answers on the same test images, and the interval
  of their accuracy difference over those images.
- interval_half_width: the t-based half-width paired_difference uses, for a given std and number of differences.
- image_sampling_floor: over cross-validation folds, how far the per-fold differences would spread from the test
  images alone, and the interval that spread would give: where it is as wide as the measured one, only more test
  images (or fewer discordant ones) narrow it.
- mann_whitney_u: the rank test of whether one sample tends to be larger than another (e.g. active gates of correct
  against wrong predictions), with its AUC and a two-sided p-value.
- mean_std: mean and sample std (ddof=1 by default) of a column that may hold missing (None) values.
- balanced_accuracy, majority_rate: read-out accuracies measured against the label imbalance (LFW is 86 % male).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from facegraph.data.attributes import UNKNOWN_CODE


def binomial_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact Clopper-Pearson interval of a proportion `correct / total`, as fractions in [0, 1].

    Clopper-Pearson inverts the binomial test: its bounds are the Beta(correct, total - correct + 1) quantile at
    (1 - confidence) / 2 and the Beta(correct + 1, total - correct) quantile at (1 + confidence) / 2 (0 and 1 at
    the ends). It is conservative (covers at least `confidence` for every true rate), which suits accuracies near
    100 % and small test sets better than the normal approximation. Computed by scipy.stats.binomtest.
    """
    correct, total = _whole(correct, "correct"), _whole(total, "total")
    if total < 1 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total >= 1, got correct={correct}, total={total}")
    _check_confidence(confidence)
    interval = stats.binomtest(correct, total).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class PairedDifference:
    """Differences a - b of two models over seeds (same seed, same data), with a t interval on their mean.

    `std` is the sample standard deviation (ddof=1) of the per-seed differences; `low`/`high` bound the mean
    difference at `confidence` (t distribution with n - 1 degrees of freedom). With one seed std, low and high
    are nan: no interval can be computed, and `supported` is False. So are low and high when every seed gave the
    same difference (std 0, as whole-image steps on a small test set can): a zero-width interval would call any
    such difference supported, while the seeds have only failed to show their spread. `test_train_ratio` > 0: the
    interval was corrected for overlapping training sets (see paired_difference).
    """

    mean: float
    std: float
    n: int
    low: float
    high: float
    confidence: float
    differences: tuple[float, ...]
    test_train_ratio: float = 0.0

    @property
    def has_interval(self) -> bool:
        """True when an interval was computed: at least two seeds, whose differences are not all the same."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def supported(self) -> bool:
        """True only when the interval excludes zero: a difference the seeds support."""
        return self.has_interval and (self.low > 0 or self.high < 0)

    @property
    def direction(self) -> int:
        """+1 when the interval lies above zero (a > b), -1 when below (a < b), 0 when not supported."""
        if not self.supported:
            return 0
        return 1 if self.low > 0 else -1

    @property
    def verdict(self) -> str:
        """One phrase for a report: 'a > b', 'a < b', 'no supported difference' or why there is no interval."""
        if not self.has_interval:
            if self.n > 1:
                return f"no interval: the {self.n} seeds gave the same difference"
            return "no interval from 1 seed"
        return {1: "a > b", -1: "a < b", 0: "no supported difference"}[self.direction]

    def describe(self, scale: float = 1.0, digits: int = 2, unit: str = "", sample: str = "seed") -> str:
        """e.g. '-1.76 +- 3.33 (95 % interval -10.03 to +6.51, 3 seeds): no supported difference'.

        Values are multiplied by `scale` (100 turns fractions into points) before printing; `sample` names what the
        differences were taken over (e.g. "fold" for verification folds).
        """
        mean = f"{self.mean * scale:+.{digits}f}{unit}"
        samples = f"{self.n} {sample}{'s' if self.n != 1 else ''}"
        if not self.has_interval:
            return f"{mean} ({samples}, no interval{': every one the same' if self.n > 1 else ''})"
        percent = f"{100 * self.confidence:g} %"
        corrected = ", corrected for overlapping training sets" if self.test_train_ratio else ""
        return (f"{mean} +- {self.std * scale:.{digits}f}{unit} ({percent} interval {self.low * scale:+.{digits}f} "
                f"to {self.high * scale:+.{digits}f}{unit}, {samples}{corrected}): {self.verdict}")


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                      test_train_ratio: float = 0.0) -> PairedDifference:
    """Mean, sample std and t interval of the per-seed differences a[i] - b[i].

    a and b hold one accuracy per seed, in the same seed order (e.g. AIG and ResNet trained with seeds 0..n-1).
    The interval is mean +- t_{(1 + confidence)/2, n-1} * std * sqrt(1/n + test_train_ratio). With the default
    ratio 0 that is the plain t interval, right for independent seeds on one split. Cross-validation folds are not
    independent: any two share most of their training images, so their differences correlate and the plain
    interval is too narrow. Nadeau and Bengio (2003, "Inference for the generalization error") correct the
    variance of the mean from std^2 / n to std^2 (1/n + n_test / n_train); pass `test_train_ratio` = n_test /
    n_train of a fold. With n = 1 the std and the interval are nan (one seed says nothing about the spread between
    seeds); with identical differences (std 0) the interval is nan (see PairedDifference).
    """
    if not (math.isfinite(test_train_ratio) and test_train_ratio >= 0):
        raise ValueError(f"test_train_ratio must be a finite number >= 0, got {test_train_ratio}")
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.ndim != 1 or first.shape != second.shape or len(first) == 0:
        raise ValueError(f"expected two non-empty 1-D sequences of equal length, got shapes {first.shape} and "
                         f"{second.shape}")
    _check_confidence(confidence)
    differences = first - second
    if not np.isfinite(differences).all():
        raise ValueError("the per-seed values must be finite numbers (no None, nan or inf)")
    n = len(differences)
    mean = float(differences.mean())
    if n == 1:
        std = low = high = math.nan
    else:
        std = float(differences.std(ddof=1))
        if std == 0:
            low = high = math.nan
        else:
            half_width = interval_half_width(std, n, confidence, test_train_ratio)
            low, high = mean - half_width, mean + half_width
    return PairedDifference(mean=mean, std=std, n=n, low=low, high=high, confidence=confidence,
                            differences=tuple(float(d) for d in differences), test_train_ratio=test_train_ratio)


def interval_half_width(std: float, n: int, confidence: float = 0.95, test_train_ratio: float = 0.0) -> float:
    """Half-width of paired_difference's interval for n differences of sample std `std`:
    t_{(1 + confidence)/2, n-1} * std * sqrt(1/n + test_train_ratio)."""
    if n < 2:
        raise ValueError(f"an interval needs at least 2 differences, got {n}")
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be a finite number >= 0, got {std}")
    if not (math.isfinite(test_train_ratio) and test_train_ratio >= 0):
        raise ValueError(f"test_train_ratio must be a finite number >= 0, got {test_train_ratio}")
    _check_confidence(confidence)
    return float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std * math.sqrt(1 / n + test_train_ratio)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test of two models answering the same test images.

    b01: images model a got wrong and model b got right; b10: images a got right and b got wrong; `total` counts
    every image. Under the null hypothesis (equal accuracy) each discordant image is a fair coin, so the two-sided
    p-value is that of a binomial test of b10 successes in b01 + b10 trials at 0.5 (1 without discordant images).
    """

    b01: int
    b10: int
    total: int
    p_value: float

    @property
    def discordant(self) -> int:
        """Images on which the two models disagree in correctness (b01 + b10)."""
        return self.b01 + self.b10

    @property
    def accuracy_difference(self) -> float:
        """Accuracy of a minus accuracy of b, as a fraction: (b10 - b01) / total."""
        return (self.b10 - self.b01) / self.total if self.total else 0.0

    def significant(self, alpha: float = 0.05) -> bool:
        """True when p < alpha: the two models' accuracies differ on these images."""
        return self.p_value < alpha

    def difference_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Interval of the accuracy difference a - b over images (the Wald interval for paired proportions: variance
        (b10 + b01 - (b10 - b01)^2 / n) / n^2). It treats the images as the sample and the two models as fixed, so
        training noise is not in it; the interval over seeds (`paired_difference`) is the one that includes it."""
        _check_confidence(confidence)
        spread = float(stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(self.difference_variance)
        return (self.accuracy_difference - spread, self.accuracy_difference + spread)

    @property
    def difference_variance(self) -> float:
        """Variance of the accuracy difference a - b from sampling the test images (models fixed): (b10 + b01 -
        (b10 - b01)^2 / n) / n^2, 0 without images."""
        if not self.total:
            return 0.0
        return max(0.0, self.discordant - (self.b10 - self.b01) ** 2 / self.total) / self.total ** 2


def mcnemar_exact(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray) -> McNemarResult:
    """McNemar's exact test on per-image correctness of models a and b (same images, same order).

    Only the discordant images count: b01 (a wrong, b right) and b10 (a right, b wrong). p is the exact two-sided
    binomial p-value of b10 out of b01 + b10 at probability 0.5 (scipy.stats.binomtest), or 1 when b01 + b10 = 0.
    """
    first, second = np.asarray(correct_a), np.asarray(correct_b)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError(f"expected two 1-D arrays of equal length, got shapes {first.shape} and {second.shape}")
    for name, values in (("correct_a", first), ("correct_b", second)):
        if values.dtype != np.bool_ and not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must hold right/wrong answers (booleans or 0/1)")
    first, second = first.astype(bool), second.astype(bool)
    b01 = int((~first & second).sum())
    b10 = int((first & ~second).sum())
    p_value = 1.0 if b01 + b10 == 0 else float(stats.binomtest(b10, b01 + b10, 0.5).pvalue)
    return McNemarResult(b01=b01, b10=b10, total=len(first), p_value=min(p_value, 1.0))


@dataclass(frozen=True)
class ImageSamplingFloor:
    """What the test images alone put into a paired difference over cross-validation folds (image_sampling_floor)."""

    std: float  # spread of the per-fold differences expected from the test images alone (a fraction)
    half_width: float  # the interval half-width that spread gives, with the same n, confidence and correction


def image_sampling_floor(tests: Sequence[McNemarResult], confidence: float = 0.95,
                         test_train_ratio: float = 0.0) -> ImageSamplingFloor:
    """The spread of per-fold differences that sampling the test images alone produces, and the interval it gives.

    For differences measured on disjoint test sets, as cross-validation folds are (seeds on one split share their
    test images, and this is no floor for them). Each fold's difference is measured on a finite test set; its
    variance from that alone is the McNemar counts' `difference_variance`. The root of their mean is the std the
    differences would show on average (in variance: the sample variance over folds has that expectation) if every
    fold trained the same two models; passed through `interval_half_width` with the same n, confidence and
    `test_train_ratio` as the measured interval, it is the half-width such folds would give with the sample std at
    that root. Training noise adds to the variance, so the recipe cannot lower the expected variance below this
    floor; one run's interval, whose std rests on n - 1 degrees of freedom, can still come out narrower by chance.
    Only more test images, or fewer discordant ones, lower the floor. Differences are fractions, as
    `accuracy_difference`.
    """
    if len(tests) < 2:
        raise ValueError(f"a floor under an interval over folds needs at least 2 folds' tests, got {len(tests)}")
    std = math.sqrt(sum(t.difference_variance for t in tests) / len(tests))
    return ImageSamplingFloor(std, interval_half_width(std, len(tests), confidence, test_train_ratio))


@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney U test of sample a against sample b (normal approximation, tie-corrected, continuity-corrected).

    `u` counts pairs with a > b (ties count one half); `auc` = u / (n_a n_b) = P(a > b) + P(a = b) / 2, 0.5 when
    neither sample tends to be larger (the same number recognition.protocol.roc_auc gives with a as the matched
    scores); `p_two_sided` is NaN when either sample is empty or all values are equal.
    """

    u: float
    auc: float
    z: float
    p_two_sided: float
    n_a: int
    n_b: int


def mann_whitney_u(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> RankTest:
    """Mann-Whitney U of `a` versus `b`, computed from average ranks (ties share the mean of their ranks) of the
    pooled sample; U itself, not only the AUC, is needed for the z score."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        return RankTest(math.nan, math.nan, math.nan, math.nan, n_a, n_b)
    pooled = np.concatenate([a, b])
    ranks = stats.rankdata(pooled, method="average")
    u = float(ranks[:n_a].sum() - n_a * (n_a + 1) / 2.0)
    n = n_a + n_b
    _, tie_sizes = np.unique(pooled, return_counts=True)
    tie_term = float((tie_sizes ** 3 - tie_sizes).sum()) / (n * (n - 1)) if n > 1 else 0.0
    variance = n_a * n_b / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return RankTest(u, u / (n_a * n_b), math.nan, math.nan, n_a, n_b)
    deviation = u - n_a * n_b / 2.0
    # Continuity correction: U is discrete, so the normal approximation of its tail starts half a unit closer to the mean.
    z = math.copysign(max(abs(deviation) - 0.5, 0.0), deviation) / math.sqrt(variance)
    return RankTest(u, u / (n_a * n_b), z, math.erfc(abs(z) / math.sqrt(2.0)), n_a, n_b)


def mean_std(values: Iterable[float | None], ddof: int = 1) -> tuple[float | None, float | None]:
    """Mean and standard deviation of the values that are not None.

    ddof=1 (default) gives the sample std, the spread between seeds; ddof=0 the population std (e.g. of per-image
    costs, where every image is counted). With ddof=1 one value has no std (None); no value gives (None, None).
    Accepts lists (None skipped), numpy arrays and CPU tensors; nan values are not skipped and propagate.
    """
    array = np.asarray(values).ravel() if hasattr(values, "__array__") else None
    if array is not None and array.dtype != object:
        known = array.astype(np.float64)
    else:
        known = np.asarray([float(v) for v in (values if array is None else array) if v is not None],
                           dtype=np.float64)
    if len(known) == 0:
        return None, None
    if len(known) <= ddof:
        return float(known.mean()), None
    return float(known.mean()), float(known.std(ddof=ddof))


def _known_codes(true_codes: Sequence[int] | np.ndarray) -> np.ndarray:
    codes = np.asarray(true_codes)
    if codes.ndim != 1:
        raise ValueError(f"expected 1-D label codes, got shape {codes.shape}")
    if len(codes) and not np.issubdtype(codes.dtype, np.integer):
        if not np.array_equal(codes, np.round(codes)):
            raise ValueError("label codes must be whole numbers")
    codes = codes.astype(np.int64)
    if len(codes) and codes.min() < UNKNOWN_CODE:
        raise ValueError(f"label codes must be >= 0 or {UNKNOWN_CODE} (unknown), got {codes.min()}")
    return codes


def balanced_accuracy(true_codes: Sequence[int] | np.ndarray, predicted_codes: Sequence[int] | np.ndarray,
                      num_labels: int) -> float | None:
    """Mean per-label recall: for each label present among the known true codes, the share of its images predicted
    as that label, averaged with equal weight per label.

    Images whose true code is -1 (unknown) are ignored; a predicted code of -1 is simply wrong. Always answering
    one label scores 1 / (labels present), whatever the imbalance. None when no image has a known label.
    """
    truth, predicted = _known_codes(true_codes), np.asarray(predicted_codes)
    if predicted.shape != truth.shape:
        raise ValueError(f"expected true and predicted codes of equal shape, got {truth.shape} and "
                         f"{predicted.shape}")
    if len(truth) and truth.max() >= num_labels:
        raise ValueError(f"label codes must lie in 0..{num_labels - 1} or be {UNKNOWN_CODE}, got {truth.max()}")
    known = truth != UNKNOWN_CODE
    truth, predicted = truth[known], predicted[known]
    if len(truth) == 0:
        return None
    recalls = [float((predicted[truth == label] == label).mean()) for label in np.unique(truth)]
    return float(np.mean(recalls))


def majority_rate(true_codes: Sequence[int] | np.ndarray) -> float | None:
    """Share of the known images carrying the most frequent label: the accuracy of always answering it.

    Codes of -1 (unknown) are ignored; None when no image has a known label.
    """
    codes = _known_codes(true_codes)
    codes = codes[codes != UNKNOWN_CODE]
    if len(codes) == 0:
        return None
    return float(np.bincount(codes).max() / len(codes))


def _whole(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
