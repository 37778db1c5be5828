"""Fig. 5: easy/hard selection and the comparison of active gates, correct vs wrong (the Mann-Whitney test itself:
test_statistics.py)."""

import numpy as np
import pytest
from PIL import Image

from facegraph.analysis.easy_hard import (
    compare_active_gates, easy_hard_examples, plot_active_gate_distribution, plot_easy_hard_grid,
)


def test_easy_and_hard_are_the_fewest_and_most_gates_among_correct_images():
    identity = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    correct = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    active = np.array([5, 2, 9, 0, 4, 4, 6, 3, 1, 7])
    examples = easy_hard_examples(identity, correct, active, max_identities=5)
    # Identity 0 spreads 2..9 (the wrong image with 0 gates does not count), identity 1 spreads 4..6;
    # identities 2 and 3 have a single correct image each.
    assert [e.identity for e in examples] == [0, 1]
    assert (examples[0].easy, examples[0].hard, examples[0].easy_gates, examples[0].hard_gates) == (1, 2, 2, 9)
    assert (examples[1].easy, examples[1].hard, examples[1].correct_images) == (4, 6, 3)  # tie 4/4: earlier record
    assert easy_hard_examples(identity, correct, active, max_identities=1) == examples[:1]


def test_comparison_of_correct_and_wrong_predictions():
    active = np.array([8, 9, 7, 8, 10, 1, 0, 2, 0])
    correct = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    comparison = compare_active_gates(active, correct, num_gates=12)
    assert comparison.correct_mean == pytest.approx(8.4) and comparison.wrong_mean == pytest.approx(0.75)
    assert comparison.correct_median == 8 and comparison.wrong_median == 0.5
    assert comparison.wrong_none_open == 0.5 and comparison.correct_none_open == 0.0
    assert comparison.test.auc == 1.0 and comparison.test.p_two_sided < 0.05
    figure = plot_active_gate_distribution(active, correct, comparison, "title")
    assert figure.axes[0].get_xlabel() == "active gates (of 12 gated blocks)"


def test_easy_hard_grid_marks_missing_images():
    identity = np.array([0, 0, 1, 1])
    examples = easy_hard_examples(identity, np.ones(4, dtype=bool), np.array([1, 3, 2, 2]))
    figure = plot_easy_hard_grid(examples, ["A", "B"], 4, lambda i: None if i == 1 else Image.new("RGB", (8, 8)), "t")
    texts = [t.get_text() for axes in figure.axes for t in axes.texts]
    assert texts == ["image not found"]
    assert [axes.get_xlabel() for axes in figure.axes] == ["1 of 4 gates active", "2 of 4 gates active",
                                                          "3 of 4 gates active", "2 of 4 gates active"]
