"""IIG masks, the losses of eq. 2-4 and the read-out of eq. 5."""

import math

import pytest
import torch

from facegraph.errors import ConfigError
from facegraph.graphs import (
    alternate_masks, block_masks, build_feature_masks, check_disjoint_features, explicit_masks, iig_loss,
    label_prototypes, read_out, target_rate_loss, training_loss,
)

GENDER = ("male", "female")
AGE = ("<35", "35-45", "45-55", ">55")


def test_target_rate_loss_is_eq2():
    gate_values = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([0.5, 0.5, 0.5])
    # batch rates 0.75, 0.25, 0.75
    assert target_rate_loss(gate_values, targets).item() == pytest.approx(3 * 0.25 ** 2)
    assert target_rate_loss(gate_values, gate_values.mean(0)).item() == 0.0


def test_paper_mask_schemes():
    gender = alternate_masks("gender", GENDER, 23)
    assert gender.label_gates[0] == tuple(range(0, 23, 2)) and gender.label_gates[1] == tuple(range(1, 23, 2))
    assert gender.feature_gates == list(range(23))
    gender_blocks = block_masks("gender", GENDER, 23, block_size=3)
    age = block_masks("age", AGE, 23, block_size=4, start=6)
    assert gender_blocks.label_gates == ((0, 1, 2), (3, 4, 5))
    assert age.label_gates[-1] == (18, 19, 20, 21)
    check_disjoint_features([gender_blocks, age])
    assert build_feature_masks("age", AGE, 23, "blocks", block_size=4, start=6) == age


def test_overlapping_masks_raise_naming_the_gates():
    with pytest.raises(ConfigError, match="overlap on gate 2"):
        explicit_masks("gender", GENDER, 10, {"male": [0, 1, 2], "female": [2, 3]})
    with pytest.raises(ConfigError, match=r"overlap on gates \[4, 5\]"):
        check_disjoint_features([block_masks("gender", GENDER, 23, 3), block_masks("age", AGE, 23, 4, start=4)])
    with pytest.raises(ConfigError, match="outside"):
        block_masks("age", AGE, 10, block_size=4)
    with pytest.raises(ConfigError, match="unknown mask scheme"):
        build_feature_masks("age", AGE, 10, "random")


def test_iig_loss_is_zero_on_the_mask_and_grows_with_each_wrong_gate():
    masks = alternate_masks("gender", GENDER, 6)
    labels = torch.tensor([0, 1, 1])
    perfect = masks.matrix()[labels]
    assert iig_loss(perfect, labels, masks).item() == 0.0
    losses = []
    for wrong in range(1, 4):
        gate_values = perfect.clone()
        gate_values[:, :wrong] = 1 - gate_values[:, :wrong]
        losses.append(iig_loss(gate_values, labels, masks).item())
    assert losses == [1.0, 2.0, 3.0]  # squared distance per image, averaged over images


def test_iig_loss_ignores_unknown_labels_and_other_features_gates():
    age = block_masks("age", AGE, 23, 4, start=6)
    gate_values = torch.zeros(3, 23)
    gate_values[0, 6:10] = 1.0  # image 0 is "<35" and opens exactly that mask
    gate_values[:, :6] = 1.0  # gates outside the age feature do not count for it
    assert iig_loss(gate_values, torch.tensor([0, -1, -1]), age).item() == 0.0
    assert iig_loss(gate_values, torch.tensor([-1, -1, -1]), age).item() == 0.0
    assert iig_loss(gate_values, torch.tensor([0, 3, -1]), age).item() == pytest.approx(4.0 / 2)


def test_balanced_iig_loss_weighs_each_label_equally():
    masks = alternate_masks("gender", GENDER, 4)
    labels = torch.tensor([0, 0, 0, 1, -1])
    gate_values = masks.matrix()[labels.clamp(min=0)]
    gate_values[3] = 1 - gate_values[3]  # the one female image is wrong on all 4 gates
    assert iig_loss(gate_values, labels, masks).item() == pytest.approx(4.0 / 4)  # 4 known images
    assert iig_loss(gate_values, labels, masks, balanced=True).item() == pytest.approx(0.5 * 0 + 0.5 * 4.0)
    gate_values[0] = 1 - gate_values[0]  # one of three male images wrong too
    assert iig_loss(gate_values, labels, masks, balanced=True).item() == pytest.approx(0.5 * 4.0 / 3 + 0.5 * 4.0)


def test_training_loss_combines_its_parts():
    torch.manual_seed(0)
    logits, identities = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    gate_values = torch.randint(0, 2, (4, 6)).float()
    targets = torch.full((6,), 0.5)
    gender = alternate_masks("gender", GENDER, 6)
    codes = torch.tensor([0, 1, -1, 0])
    parts = training_loss(logits, identities, gate_values, targets, target_weight=0.5, iig_weight=2.0,
                          iig_features=[(gender, codes)])
    expected_ce = torch.nn.functional.cross_entropy(logits, identities)
    assert parts.cross_entropy.item() == pytest.approx(expected_ce.item())
    assert parts.target.item() == pytest.approx(target_rate_loss(gate_values, targets).item())
    assert parts.iig.item() == pytest.approx(iig_loss(gate_values, codes, gender).item())
    assert parts.total.item() == pytest.approx(expected_ce.item() + 0.5 * parts.target.item() + 2.0 * parts.iig.item())
    plain = training_loss(logits, identities, torch.zeros(4, 0), torch.zeros(0))
    assert plain.total.item() == pytest.approx(expected_ce.item())


def test_distillation_loss_is_the_scaled_kl_divergence():
    from facegraph.graphs.losses import distillation_loss

    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert distillation_loss(teacher.clone(), teacher, 3.0).item() == pytest.approx(0.0, abs=1e-7)
    # Two classes at T = 2, by hand: p = softmax(teacher / 2), q = softmax(student / 2), T^2 * mean_i sum_c p log(p/q).
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    p = [[1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1))], [1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5))]]
    q = [[0.5, 0.5], [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(0.5))]]
    expected = 4 * sum(p[i][c] * math.log(p[i][c] / q[i][c]) for i in range(2) for c in range(2)) / 2
    loss = distillation_loss(student, teacher.requires_grad_(), 2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert student.grad is not None and teacher.grad is None  # the teacher only teaches
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(student, teacher, 0.0)


def test_training_loss_adds_distillation_on_scaled_cosines():
    from facegraph.graphs.losses import distillation_loss

    torch.manual_seed(0)
    cosines, identities, teacher = torch.rand(4, 5) * 2 - 1, torch.tensor([0, 1, 2, 3]), torch.randn(4, 5) * 10
    parts = training_loss(cosines, identities, torch.zeros(4, 0), torch.zeros(0), margin="cosface", margin_m=0.35,
                          margin_scale=30.0, teacher_logits=teacher, distill_weight=0.5, distill_temperature=4.0)
    assert parts.distill.item() == pytest.approx(distillation_loss(30.0 * cosines, teacher, 4.0).item())
    assert parts.total.item() == pytest.approx(parts.cross_entropy.item() + 0.5 * parts.distill.item())
    without = training_loss(cosines, identities, torch.zeros(4, 0), torch.zeros(0), margin="cosface", margin_m=0.35,
                            margin_scale=30.0)
    assert without.distill.item() == 0.0 and without.total.item() == pytest.approx(parts.cross_entropy.item())


def test_readout_recovers_labels_from_noisy_gates():
    generator = torch.Generator().manual_seed(1)
    masks = block_masks("age", AGE, 16, block_size=4)
    labels = torch.randint(0, 4, (500,), generator=generator)
    gate_values = masks.matrix()[labels]
    flips = torch.rand(gate_values.shape, generator=generator) < 0.15
    noisy = torch.where(flips, 1 - gate_values, gate_values)
    predicted, distances = read_out(noisy, masks.matrix())
    assert distances.shape == (500, 4)
    assert (predicted == labels).float().mean() > 0.9
    assert (predicted != labels).any()  # the noise was real


def test_readout_ties_go_to_the_lowest_label():
    masks = alternate_masks("gender", GENDER, 4)
    predicted, _ = read_out(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]), masks.matrix())
    assert predicted.tolist() == [0, 0]


def test_label_prototypes_for_models_without_masks():
    gate_values = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    prototypes = label_prototypes(gate_values, torch.tensor([0, 0, 1]), num_labels=3)
    assert torch.equal(prototypes[:2], torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    predicted, _ = read_out(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), prototypes)
    assert predicted.tolist() == [1, 0]  # the label without images is never chosen
