"""Open-set identification: per-person max scores, the calibrated threshold, "unknown" answers, the cache key."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from facegraph.errors import ConfigError, DataError
from facegraph.recognition import UNKNOWN_PERSON, Gallery, calibrate_threshold, gallery_fingerprint, open_set_rates
from facegraph.recognition.gallery import false_alarm_bound
from facegraph.recognition.run_gallery import impostor_pairs, impostor_scores


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def faces_of(centres: np.ndarray, per_person: int, rng: np.random.Generator, noise: float = 0.15) -> np.ndarray:
    """`per_person` noisy unit embeddings around each centre, person by person."""
    return unit(np.repeat(centres, per_person, axis=0) + noise * rng.normal(size=(len(centres) * per_person, centres.shape[1])))


def test_gallery_people_are_found_and_strangers_are_unknown() -> None:
    rng = np.random.default_rng(5)
    dimensions, people = 64, [f"person_{index}" for index in range(8)]
    centres = unit(rng.normal(size=(8, dimensions)))
    strangers = unit(rng.normal(size=(4, dimensions)))
    gallery = Gallery(torch.from_numpy(faces_of(centres, 3, rng)).float(), [name for name in people for _ in range(3)])
    # Impostor scores: other random people's faces compared with each other.
    others = faces_of(unit(rng.normal(size=(60, dimensions))), 2, rng)
    cosines = others @ others.T
    different = np.repeat(np.arange(60), 2)[:, None] != np.repeat(np.arange(60), 2)[None, :]
    threshold = calibrate_threshold(cosines[np.triu(different)], far=0.001)
    queries = np.concatenate([faces_of(centres, 1, rng), faces_of(strangers, 1, rng)])
    results = gallery.search(queries, threshold, top_k=3)
    assert [result.answer for result in results] == people + [UNKNOWN_PERSON] * 4
    for result in results[:8]:
        assert result.best_score >= threshold
        assert len(result.ranked) == 3
        assert [score for _, score in result.ranked] == sorted((score for _, score in result.ranked), reverse=True)
    for result in results[8:]:
        assert result.best_score < threshold
        assert result.ranked[0][1] == result.best_score  # the best guess is still reported


def test_person_score_is_the_max_over_their_images() -> None:
    rng = np.random.default_rng(1)
    embeddings = unit(rng.normal(size=(7, 16)))
    names = ["a", "b", "a", "c", "b", "a", "c"]
    queries = unit(rng.normal(size=(5, 16)))
    gallery = Gallery(embeddings, names)
    assert gallery.people == ["a", "b", "c"]
    scores = gallery.person_scores(queries).numpy()
    for column, person in enumerate(gallery.people):
        rows = [index for index, name in enumerate(names) if name == person]
        assert scores[:, column] == pytest.approx((queries @ embeddings[rows].T).max(axis=1))
    # A query identical to one of a's photos scores 1 for a, whatever a's other photos look like.
    exact = gallery.search(embeddings[5:6], threshold=0.99, top_k=1)[0]
    assert exact.answer == "a" and exact.best_score == pytest.approx(1.0)


def test_calibrated_threshold_is_the_lowest_within_the_rate() -> None:
    rng = np.random.default_rng(9)
    impostors = np.round(rng.normal(0.0, 0.2, 2000), 3)  # with ties
    for far in (0.001, 0.01, 0.1):
        threshold = calibrate_threshold(impostors, far)
        assert np.mean(impostors >= threshold) <= far
        # Lowering it to the highest impostor score it rejects would break the rate.
        assert np.mean(impostors >= impostors[impostors < threshold].max()) > far


def test_unresolvable_rate_logs_a_warning_and_rejects_every_impostor(caplog: pytest.LogCaptureFixture) -> None:
    impostors = np.linspace(-0.2, 0.4, 50)
    with caplog.at_level(logging.WARNING, logger="facegraph.recognition.gallery"):
        threshold = calibrate_threshold(impostors, 0.001)
    assert threshold > impostors.max()
    assert "cannot resolve" in caplog.text


def test_gallery_rejects_bad_inputs() -> None:
    embeddings = unit(np.random.default_rng(0).normal(size=(3, 8)))
    with pytest.raises(DataError, match="L2-normalised"):
        Gallery(embeddings * 2, ["a", "b", "c"])
    with pytest.raises(DataError, match="names"):
        Gallery(embeddings, ["a", "b"])
    with pytest.raises(DataError, match="reserved"):
        Gallery(embeddings, ["a", UNKNOWN_PERSON, "c"])
    gallery = Gallery(embeddings, ["a", "b", "c"])
    with pytest.raises(DataError, match="dimensions"):
        gallery.search(unit(np.ones((1, 4))), 0.5)
    with pytest.raises(ConfigError, match="top_k"):
        gallery.search(embeddings, 0.5, top_k=0)


def test_fingerprint_follows_the_files_not_their_order() -> None:
    files = [("gallery/a/1.jpg", 1200, 1700000000.25), ("gallery/b/1.jpg", 900, 1700000001.5)]
    fingerprint = gallery_fingerprint(files)
    assert fingerprint == gallery_fingerprint(list(reversed(files)))
    assert fingerprint != gallery_fingerprint(files[:1])
    assert fingerprint != gallery_fingerprint([files[0], ("gallery/b/1.jpg", 901, 1700000001.5)])
    assert fingerprint != gallery_fingerprint([files[0], ("gallery/b/1.jpg", 900, 1700000002.5)])
    assert fingerprint != gallery_fingerprint([files[0], ("gallery/c/1.jpg", 900, 1700000001.5)])


def test_open_set_rates_count_hits_misses_and_false_alarms() -> None:
    # Three gallery people on the axes of R^4; a fourth direction belongs to nobody in the gallery.
    axes = np.eye(4)
    gallery = Gallery(axes[:3], ["ann", "bob", "cy"])
    lean = lambda a, b, w: unit(np.array([w * axes[a] + (1 - w) * axes[b]]))[0]  # noqa: E731
    mated = np.stack([lean(0, 3, 0.9),   # ann, close: found above the threshold
                      lean(1, 3, 0.6),   # bob, right but weak: score 0.6/|.| = 0.83 < 0.9
                      lean(2, 0, 0.4)])  # cy, but nearer ann: wrong at rank 1
    non_mated = np.stack([axes[3], lean(3, 0, 0.3)])  # a stranger; a stranger who looks like ann (0.92 to ann)
    rates = open_set_rates(gallery, mated, ["ann", "bob", "cy"], non_mated, threshold=0.9)
    assert rates.rank1 == pytest.approx(2 / 3)
    assert rates.detection_identification_rate == pytest.approx(1 / 3)
    assert rates.false_alarm_rate == pytest.approx(1 / 2)
    assert (rates.mated, rates.non_mated) == (3, 2)
    lenient = open_set_rates(gallery, mated, ["ann", "bob", "cy"], non_mated, threshold=0.0)  # the stranger scores 0
    assert lenient.detection_identification_rate == pytest.approx(2 / 3) and lenient.false_alarm_rate == 1.0
    with pytest.raises(DataError, match="not in the gallery: dan"):
        open_set_rates(gallery, mated, ["ann", "bob", "dan"], non_mated, threshold=0.9)


def test_strangers_are_named_up_to_gallery_images_times_far() -> None:
    # 40 people x 5 images at FAR 1e-3 per image pair: people x FAR = 0.04, gallery images x FAR = 0.2.
    rng = np.random.default_rng(0)
    dimensions, far, names = 32, 1e-3, [f"person_{index}" for index in range(40) for _ in range(5)]
    # Calibrated as load_gallery does (impostor pairs of a gallery), on 2,000 people so that the threshold's rate
    # per pair is FAR to a few per cent; random unit vectors: every image is as likely to match a stranger.
    calibration = unit(rng.normal(size=(2000, dimensions)))
    threshold = calibrate_threshold(impostor_scores(calibration, [str(index) for index in range(2000)]), far)
    strangers = unit(rng.normal(size=(20000, dimensions)))
    unrelated = unit(rng.normal(size=(200, dimensions)))  # the worst case: a person's images unlike each other
    alike = unit(np.repeat(unit(rng.normal(size=(40, dimensions))), 5, axis=0)
                 + 0.5 * unit(rng.normal(size=(200, dimensions))))
    bound = false_alarm_bound(far, len(names))
    assert bound == pytest.approx(0.2)
    for images in (unrelated, alike):
        rate = open_set_rates(Gallery(images, names), images[:1], names[:1], strangers, threshold).false_alarm_rate
        assert 2 * 40 * far < rate <= bound  # measured 0.18 and 0.13: far above people x FAR, within the bound
    assert false_alarm_bound(0.01, 500) == 1.0


def test_impostor_pairs_are_every_pair_of_different_people_or_a_uniform_sample() -> None:
    first, second = impostor_pairs(np.array([0, 0, 1, 2]), limit=10)
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]

    def check(codes: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        first, second = impostor_pairs(codes, limit)
        assert len(first) == limit and (first < second).all() and (codes[first] != codes[second]).all()
        assert len(set(zip(first.tolist(), second.tolist()))) == limit  # without replacement
        again = impostor_pairs(codes, limit)
        assert np.array_equal(again[0], first) and np.array_equal(again[1], second)  # seeded
        return first, second

    check(np.repeat(np.arange(20), 5), limit=1000)  # 4,750 pairs: listed, then sampled
    # 2,000 images of 200 people: 1,990,000 pairs, far more than 8 x 20,000, so drawn without being listed. Uniform:
    # pairs within the first 1,000 images are (499,500 - 100 x 45) / 1,990,000 of all; 5 standard deviations allowed.
    codes = np.repeat(np.arange(200), 10)
    first, second = check(codes, limit=20_000)
    share = (1000 * 999 / 2 - 100 * 45) / 1_990_000
    within = int(((first < 1000) & (second < 1000)).sum())
    assert abs(within - 20_000 * share) < 5 * np.sqrt(20_000 * share * (1 - share))
