"""Plug-in mutual information between gates and feature labels, and its family-wise shuffled-label chance level."""

import math

import numpy as np
import pytest

from facegraph.analysis.information import (
    entropy_bits, gate_feature_information, shuffled_max_information_quantile,
)


def test_entropy_of_known_distributions():
    assert entropy_bits(np.array([0, 1] * 50)) == pytest.approx(1.0)
    assert entropy_bits(np.arange(8)) == pytest.approx(3.0)
    assert entropy_bits(np.zeros(10)) == 0.0
    # p = (1/2, 1/4, 1/4): 1/2 * 1 + 2 * 1/4 * 2
    assert entropy_bits(np.array([0, 0, 1, 2])) == pytest.approx(1.5)


def test_a_gate_that_copies_a_binary_label_carries_its_entropy():
    generator = np.random.default_rng(0)
    labels = (generator.random(500) < 0.3).astype(int)
    assert gate_feature_information(labels[:, None], labels, 2)[0] == pytest.approx(entropy_bits(labels))
    assert gate_feature_information(1 - labels[:, None], labels, 2)[0] == pytest.approx(entropy_bits(labels))  # inverted


def test_a_gate_that_separates_two_groups_of_labels():
    # 4 labels; the gate opens for labels 2 and 3: it knows the group, I = H(group) = 1 bit with balanced labels.
    labels = np.repeat(np.arange(4), 25)
    gates = (labels >= 2).astype(float)[:, None]
    assert gate_feature_information(gates, labels, 4)[0] == pytest.approx(1.0)
    assert entropy_bits(labels) == pytest.approx(2.0)  # the label holds more than one binary gate can tell


def test_hand_computed_joint_table():
    # Joint counts (gate, label): (0,0)=3, (0,1)=1, (1,0)=1, (1,1)=3 of 8.
    gate = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    label = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    expected = 2 * (3 / 8) * math.log2((3 / 8) / 0.25) + 2 * (1 / 8) * math.log2((1 / 8) / 0.25)
    assert gate_feature_information(gate[:, None].astype(float), label, 2)[0] == pytest.approx(expected)


def test_independent_gates_carry_about_nothing_and_stay_under_the_chance_level():
    generator = np.random.default_rng(1)
    labels = generator.integers(0, 3, 4000)
    gates = generator.integers(0, 2, (4000, 5)).astype(float)
    information = gate_feature_information(gates, labels, 3)
    chance = shuffled_max_information_quantile(gates, labels, 3, rounds=100)
    assert information.max() < 0.005 and not chance.by_person  # no identities: labels shuffled among images
    assert 0 < chance.bits < 0.01
    gates[:, 4] = labels == 1  # one informative gate among them
    information = gate_feature_information(gates, labels, 3)
    assert information[4] == pytest.approx(entropy_bits(gates[:, 4]))  # a function of the label: I = H(gate)
    assert information[4] > 0.5 and information[4] > 10 * shuffled_max_information_quantile(gates, labels, 3).bits


def test_the_chance_level_is_for_the_largest_of_all_gates():
    # 16 gates unrelated to the labels: compared with each gate's own 95th percentile, the best of them would beat
    # it most of the time; against the 95th percentile of the largest I of any gate, about 5% of the time.
    above = 0
    for trial in range(40):
        generator = np.random.default_rng(trial)
        labels = generator.integers(0, 2, 417)
        gates = generator.integers(0, 2, (417, 16)).astype(float)
        above += gate_feature_information(gates, labels, 2).max() > shuffled_max_information_quantile(gates, labels, 2).bits
    assert above <= 6  # at a true 5% rate, 7 or more of 40 has a probability of 0.3%


def test_shuffles_move_labels_with_people():
    # Gates that only tell people apart, labels random per person: among images, a person's 10 identical gate
    # vectors look like 10 independent agreements with the label; among people, they are one.
    above = 0
    for trial in range(40):
        generator = np.random.default_rng(trial)
        identities = np.repeat(np.arange(40), 10)
        gates = generator.integers(0, 2, (40, 16)).astype(float)[identities]
        labels = generator.integers(0, 2, 40)[identities]
        chance = shuffled_max_information_quantile(gates, labels, 2, identities=identities)
        assert chance.by_person
        above += gate_feature_information(gates, labels, 2).max() > chance.bits
    assert above <= 6


def test_six_people_cannot_show_a_link_beyond_chance():
    # A gate that copies gender, 3 men and 3 women: 2 of the 20 ways to give 3 of 6 people one label make the
    # same split, so I = 1 bit is reached by 10% of the shuffles and is not above the 95% level.
    identities = np.repeat(np.arange(6), 20)
    labels = identities % 2
    gates = labels[:, None].astype(float)
    chance = shuffled_max_information_quantile(gates, labels, 2, identities=identities)
    assert gate_feature_information(gates, labels, 2)[0] == pytest.approx(1.0) == chance.bits


def test_labels_that_differ_within_a_person_are_shuffled_among_images():
    identities = np.array([0, 0, 1, 1, 2, 2])
    assert shuffled_max_information_quantile(np.ones((6, 1)), np.array([0, 0, 1, 1, 0, 0]), 2,
                                             identities=identities).by_person
    assert not shuffled_max_information_quantile(np.ones((6, 1)), np.array([0, 1, 1, 1, 0, 0]), 2,
                                                 identities=identities).by_person
    with pytest.raises(ValueError, match="identities of shape"):
        shuffled_max_information_quantile(np.ones((6, 1)), np.zeros(6, dtype=int), 2, identities=identities[:5])


def test_constant_gates_and_bad_input():
    labels = np.array([0, 1, 0, 1])
    assert gate_feature_information(np.ones((4, 2)), labels, 2) == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="drop unknown"):
        gate_feature_information(np.ones((4, 1)), np.array([0, -1, 0, 1]), 2)
    with pytest.raises(ValueError, match="0 or 1"):
        gate_feature_information(np.full((4, 1), 0.5), labels, 2)


def test_independent_gates_carry_exactly_zero_bits():
    # Labels with 30, 30 and 10 images, the gate open for 40 % of each: independent, but the plug-in sum of logs
    # comes out 2.7e-17 unless rounding is cleaned, and a report would name a "most informative" block.
    codes = np.repeat(np.arange(3), [30, 30, 10])
    gate = np.concatenate([np.repeat([0, 1], [6 * n, 4 * n]) for n in (3, 3, 1)])
    assert gate_feature_information(gate[:, None], codes, 3).tolist() == [0.0]
