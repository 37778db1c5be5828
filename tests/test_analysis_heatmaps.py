"""Figs. 2-4: the open-rate matrix, the per-block findings and the figure itself."""

import numpy as np
import pytest

from facegraph.analysis.heatmaps import block_findings, feature_heatmap, open_rate_matrix, plot_feature_heatmap


def test_open_rate_matrix_is_the_hand_computed_mean():
    gates = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1], [0, 1, 1]])
    codes = np.array([0, 0, 1, 1, -1])  # the last image's label is unknown: left out
    rates, counts = open_rate_matrix(gates, codes, 3)
    assert counts.tolist() == [2, 2, 0]
    assert rates[0].tolist() == [1.0, 0.5, 0.5]
    assert rates[1].tolist() == [0.5, 0.5, 0.5]
    assert np.isnan(rates[2]).all()  # a label without images is blank, not "never open"


def test_findings_name_the_informative_block_and_its_labels():
    generator = np.random.default_rng(0)
    codes = np.repeat([0, 1, -1], [300, 300, 50])
    gates = generator.integers(0, 2, (650, 6))
    gates[:, 3] = codes == 1  # block 4 (1-based) opens for "female" only
    gates[:, 5] = np.where(codes == 0, generator.random(650) < 0.8, generator.random(650) < 0.5)  # weaker, for males
    heatmap = feature_heatmap("gender", ["male", "female"], gates, codes)
    assert heatmap.counts.tolist() == [300, 300]
    assert heatmap.label_entropy == pytest.approx(1.0)
    first, second = block_findings(heatmap, top=2)
    assert (first.block, first.most_open_label, first.most_open_rate, first.least_open_rate) == (4, "female", 1.0, 0.0)
    assert (first.most_open_images, first.least_open_images) == (300, 300)
    assert first.information_bits == pytest.approx(1.0) and first.above_chance
    assert second.block == 6 and second.most_open_label == "male" and second.above_chance
    assert second.most_open_rate == pytest.approx(gates[codes == 0, 5].mean())


def test_heatmap_figure_has_labelled_axes_and_a_colour_bar(tmp_path):
    codes = np.array([0, 1, 1, 2])
    gates = np.array([[1, 0], [0, 1], [0, 1], [1, 1]])
    heatmap = feature_heatmap("skin_color", ["black", "brown", "white"], gates, codes)
    figure = plot_feature_heatmap(heatmap, "title", masks=[[0], [1], []], split="test")
    labels = [axes.get_ylabel() for axes in figure.axes]
    assert "label (test images)" in labels and "I(gate; label), bits" in labels
    assert any(axes.get_xlabel() == "mean open rate" for axes in figure.axes)  # the colour bar, above the heatmap
    tick_texts = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert tick_texts == ["black (n=1)", "brown (n=2)", "white (n=1)"]
    figure.savefig(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 1000


def test_people_behind_each_label_are_counted(tmp_path):
    identities = np.array([0, 0, 1, 2, 2, 2, 3])
    codes = np.array([0, 0, 0, 1, 1, 1, -1])  # identity 3's label is unknown
    gates = np.array([[1], [0], [1], [0], [0], [1], [1]])
    heatmap = feature_heatmap("gender", ["male", "female"], gates, codes, identities=identities)
    assert heatmap.people.tolist() == [2, 1] and heatmap.counts.tolist() == [3, 3]
    figure = plot_feature_heatmap(heatmap, "t", split="val")
    assert "label (val images)" in [axes.get_ylabel() for axes in figure.axes]  # the split the rows count
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["male (n=3, 2 people)", "female (n=3, 1 person)"]


def _top_block_above_chance(gates, codes, identities=None) -> bool:
    return block_findings(feature_heatmap("gender", ["male", "female"], gates, codes, identities=identities))[0].above_chance


def test_unrelated_gates_put_the_top_block_above_chance_about_5_percent_of_the_time():
    # 16 gates unrelated to gender, 417 images: the best of 16 against its own per-gate level was "above chance" in
    # most trials; against the level of the largest I of any block, at about the nominal 5%.
    above = 0
    for trial in range(40):
        generator = np.random.default_rng(trial)
        above += _top_block_above_chance(generator.integers(0, 2, (417, 16)), generator.integers(0, 2, 417))
    assert above <= 6  # at a true 5% rate, 7 or more of 40 has a probability of 0.3%


def test_gates_that_know_only_the_person_are_not_above_chance():
    # Labels belong to people: 40 people with 10 images each, gender random per person, gates a fixed pattern per
    # person. Labels shuffled among images made such gates look informative in every trial.
    above = 0
    identities = np.repeat(np.arange(40), 10)
    for trial in range(40):
        generator = np.random.default_rng(trial)
        gates = generator.integers(0, 2, (40, 16))[identities]
        above += _top_block_above_chance(gates, generator.integers(0, 2, 40)[identities], identities)
    assert above <= 6
