"""Plug-in mutual information between gates and feature labels, and its shuffled-label chance level."""

import math

import numpy as np
import pytest

from facegraph.analysis.information import (
    entropy_bits, gate_feature_information, mutual_information_bits, shuffled_information_quantile,
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
    assert mutual_information_bits(labels, labels) == pytest.approx(entropy_bits(labels))
    assert mutual_information_bits(1 - labels, labels) == pytest.approx(entropy_bits(labels))  # inverted copy


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
    assert mutual_information_bits(gate, label) == pytest.approx(expected)
    assert gate_feature_information(gate[:, None].astype(float), label, 2)[0] == pytest.approx(expected)


def test_independent_gates_carry_about_nothing_and_stay_under_the_chance_level():
    generator = np.random.default_rng(1)
    labels = generator.integers(0, 3, 4000)
    gates = generator.integers(0, 2, (4000, 5)).astype(float)
    gates[:, 4] = labels == 1  # one informative gate among them
    information = gate_feature_information(gates, labels, 3)
    chance = shuffled_information_quantile(gates, labels, 3, rounds=100)
    assert information[:4].max() < 0.005
    assert information[4] == pytest.approx(mutual_information_bits(gates[:, 4], labels))
    assert information[4] > 0.5 and information[4] > 10 * chance[4]
    assert (chance > 0).all() and (chance < 0.01).all()


def test_constant_gates_and_bad_input():
    labels = np.array([0, 1, 0, 1])
    assert gate_feature_information(np.ones((4, 2)), labels, 2) == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="drop unknown"):
        gate_feature_information(np.ones((4, 1)), np.array([0, -1, 0, 1]), 2)
    with pytest.raises(ValueError, match="0 or 1"):
        gate_feature_information(np.full((4, 1), 0.5), labels, 2)
