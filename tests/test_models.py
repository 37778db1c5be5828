"""Backbones, gates and the gated network of eq. 1."""

import pytest
import torch

from facegraph.graphs import middle_gated_schedule, paper_schedule, target_rate_loss
from facegraph.models import ARCHS, GatedResNet, build_model, gated, num_blocks, straight_through_gumbel
from facegraph.models.gates import Gate, deterministic_gate

CIFAR = ["resnet20", "resnet32", "resnet56", "resnet110"]
IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def gated_model(arch: str, num_classes: int = 7, width: float = 0.25, rate: float = 0.5) -> GatedResNet:
    """A model whose every block but the first and last is gated."""
    return build_model(arch, num_classes, width=width, target_rates=middle_gated_schedule(num_blocks(arch), rate, 1, 1))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_shapes_for_every_architecture(arch):
    torch.manual_seed(0)
    model = gated_model(arch, num_classes=11)
    size = 32 if arch in CIFAR else 64
    logits, gate_values = model(torch.randn(3, 3, size, size))
    assert logits.shape == (3, 11)
    assert gate_values.shape == (3, num_blocks(arch) - 2)
    assert set(gate_values.unique().tolist()) <= {0.0, 1.0}


def test_block_counts_and_widths():
    assert [num_blocks(a) for a in IMAGENET] == [8, 16, 16, 33, 50]
    assert [num_blocks(a) for a in CIFAR] == [9, 15, 27, 54]
    assert build_model("resnet50", 5).feature_channels == 2048
    assert build_model("resnet50", 5, width=0.25).feature_channels == 512
    assert build_model("resnet20", 5).feature_channels == 64


@pytest.mark.parametrize("size", [32, 48, 128])
def test_any_input_size(size):
    logits, _ = build_model("resnet18", 4, width=0.25)(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 4)


def test_plain_resnet_has_no_gates():
    model = build_model("resnet50", 10, width=0.25)
    assert model.num_gates == 0 and len(model.gates) == 0
    _, gate_values = model(torch.randn(2, 3, 32, 32))
    assert gate_values.shape == (2, 0)


def test_paper_schedule_gates_the_middle_23_blocks_of_resnet101():
    rates = paper_schedule(0.4)
    assert len(rates) == 33 and rates[:7] == [1.0] * 7 and rates[-3:] == [1.0] * 3 and set(rates[7:30]) == {0.4}
    model = build_model("resnet101", 750, target_rates=rates)
    assert model.gated_blocks == tuple(range(7, 30))
    assert torch.allclose(model.gated_target_rates(), torch.full((23,), 0.4))


def _force_gates(model: GatedResNet, value: float) -> None:
    for gate in model.gates.values():
        gate.forward = lambda x, temperature=1.0, sample=None, noise_scale=1.0: torch.full((x.shape[0],), value)


def _logits_without_gated_branches(model: GatedResNet, images: torch.Tensor) -> torch.Tensor:
    """Reference: every gated block contributes only its shortcut."""
    x = model.stem(images)
    for index, block in enumerate(model.blocks):
        x = torch.relu(block.shortcut(x)) if index in model.gated_blocks else block(x)
    return model.head(x)


def assert_closed_gates_remove_branches(model: GatedResNet, images: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        _force_gates(model, 0.0)
        closed = model(images).logits
        _force_gates(model, 1.0)
        opened = model(images).logits
        reference = _logits_without_gated_branches(model, images)
    assert torch.equal(closed, reference), "a closed gate must remove its block's contribution exactly"
    assert not torch.allclose(opened, reference), "open gates must let the blocks contribute"


@pytest.mark.parametrize("arch", ["resnet20", "resnet50"])
def test_closed_gate_removes_the_block_exactly(arch):
    torch.manual_seed(1)
    assert_closed_gates_remove_branches(gated_model(arch), torch.randn(4, 3, 32, 32))


def test_the_published_bug_fails_the_closed_gate_check(monkeypatch):
    """The authors' IIG code never multiplied the branch by the gate; such a model must fail the check above."""

    def residual_ignoring_the_gate(block, x, gate_values):
        return torch.relu(block.shortcut(x) + block.branch(x))

    monkeypatch.setattr(gated, "gated_residual", residual_ignoring_the_gate)
    torch.manual_seed(1)
    with pytest.raises(AssertionError, match="closed gate"):
        assert_closed_gates_remove_branches(gated_model("resnet20"), torch.randn(4, 3, 32, 32))


def test_straight_through_gradients_reach_the_gates():
    torch.manual_seed(2)
    model = gated_model("resnet20")
    model.train()
    logits, gate_values = model(torch.randn(8, 3, 32, 32))
    (logits.logsumexp(1).mean() + target_rate_loss(gate_values, model.gated_target_rates())).backward()
    for gate in model.gates.values():
        assert gate.fc1.weight.grad is not None and gate.fc1.weight.grad.abs().sum() > 0
        assert gate.fc2.weight.grad.abs().sum() > 0


def test_gumbel_temperature_shapes_the_gradient():
    relevance = torch.tensor([[0.2, 0.9], [1.0, -0.5], [0.0, 0.3]], requires_grad=True)
    gradients = []
    for temperature in (0.5, 2.0):
        torch.manual_seed(3)
        relevance.grad = None
        straight_through_gumbel(relevance, temperature).sum().backward()
        gradients.append(relevance.grad.clone())
    assert gradients[0].abs().sum() > 0
    assert not torch.allclose(gradients[0], gradients[1])


def test_straight_through_gumbel_is_the_two_class_softmax_of_the_paper():
    # The sigmoid of the logit gap must give the same samples and gradients as softmax((logits + Gumbel) / T)[:, OPEN]
    # computed from the same exponential draws.
    relevance = torch.randn(64, 2, generator=torch.Generator().manual_seed(1)) * 2
    for temperature, noise_scale in ((1.0, 1.0), (0.5, 0.3)):
        torch.manual_seed(7)
        fast = relevance.clone().requires_grad_(True)
        fast_gates = straight_through_gumbel(fast, temperature, noise_scale)
        (fast_gates * torch.arange(64.0)).sum().backward()
        torch.manual_seed(7)
        gumbel_noise = -torch.empty_like(relevance).exponential_().log() * noise_scale
        reference = relevance.clone().requires_grad_(True)
        soft_open = torch.softmax((reference + gumbel_noise) / temperature, dim=1)[:, 1]
        reference_gates = (soft_open > 0.5).float() + (soft_open - soft_open.detach())
        (reference_gates * torch.arange(64.0)).sum().backward()
        assert torch.equal(fast_gates, reference_gates)
        assert 0 < fast_gates.mean() < 1
        torch.testing.assert_close(fast.grad, reference.grad)


def test_gumbel_noise_scale_moves_sampled_rate_to_the_deterministic_one():
    # A logit gap of +0.4 opens a sample with probability sigmoid(0.4) = 0.60 at noise 1; inference always opens it.
    relevance = torch.tensor([[0.0, 0.4]]).repeat(20000, 1)
    torch.manual_seed(6)
    assert straight_through_gumbel(relevance, 1.0).mean().item() == pytest.approx(0.599, abs=0.015)
    assert straight_through_gumbel(relevance, 1.0, noise_scale=0.1).mean().item() > 0.97
    assert straight_through_gumbel(relevance, 1.0, noise_scale=0.0).mean().item() == 1.0
    relevance.requires_grad_(True)
    straight_through_gumbel(relevance, 1.0, noise_scale=0.1).sum().backward()
    assert relevance.grad.abs().sum() > 0  # gradients still reach the gate without noise
    with pytest.raises(ValueError, match="noise scale"):
        straight_through_gumbel(relevance, 1.0, noise_scale=-0.5)


def test_deterministic_gate_opens_iff_open_logit_is_larger_and_eval_gate_uses_it():
    # inference opens a block iff its OPEN logit (column 1) beats its CLOSED logit (column 0); a tie closes it
    relevance = torch.tensor([[0.0, 0.4], [0.4, 0.0], [1.5, 1.5], [-2.0, -1.0], [3.0, -3.0], [-0.1, 0.1]])
    assert deterministic_gate(relevance).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    # an eval-mode Gate returns exactly that decision on its own relevance, with both decisions present
    torch.manual_seed(7)
    gate = Gate(8)
    torch.nn.init.normal_(gate.fc2.weight, std=1.0)
    torch.nn.init.zeros_(gate.fc2.bias)
    gate.train()
    with torch.no_grad():
        gate(torch.randn(64, 8, 5, 5))  # BatchNorm statistics
    gate.eval()
    x = torch.randn(64, 8, 5, 5)
    with torch.no_grad():
        scores = gate.relevance(x)
        values = gate(x)
    expected = (scores[:, 1] > scores[:, 0]).float()
    assert 0 < expected.sum() < len(expected)
    assert torch.equal(values, expected)


def test_about_85_percent_of_gates_start_open_in_training():
    torch.manual_seed(4)
    model = gated_model("resnet56")
    model.train()
    _, gate_values = model(torch.randn(64, 3, 32, 32))
    assert 0.78 < gate_values.mean().item() < 0.92


def test_evaluation_is_deterministic_unless_sampling_is_asked_for():
    torch.manual_seed(5)
    model = gated_model("resnet20")
    model.train()
    for _ in range(3):  # settle BatchNorm statistics away from their initial values
        model(torch.randn(16, 3, 32, 32))
    model.eval()
    images = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        first, second = model(images).gate_values, model(images).gate_values
        sampled = [model(images, sample_gates=True).gate_values for _ in range(5)]
    assert torch.equal(first, second)
    assert any(not torch.equal(first, s) for s in sampled)


def test_target_loss_moves_gate_rates_to_the_target():
    torch.manual_seed(6)
    model = gated_model("resnet20", num_classes=4, rate=0.3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 4, (32,))
    targets = model.gated_target_rates()
    model.train()
    rates = []
    for _ in range(40):
        logits, gate_values = model(images)
        loss = torch.nn.functional.cross_entropy(logits, labels) + 5.0 * target_rate_loss(gate_values, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rates.append(gate_values.mean().item())
    assert rates[0] > 0.7
    assert abs(sum(rates[-5:]) / 5 - 0.3) < 0.1


def test_bad_schedules_are_rejected():
    with pytest.raises(Exception, match="33 blocks"):
        build_model("resnet101", 10, target_rates=[0.5] * 10)
    with pytest.raises(Exception, match=r"\[0, 1\]"):
        build_model("resnet20", 10, target_rates=[1.5] * 9)
    with pytest.raises(Exception, match="unknown architecture"):
        build_model("resnet7", 10)


def test_embeddings_are_unit_norm_deterministic_and_equal_dense_and_skipping():
    torch.manual_seed(7)
    model = gated_model("resnet50", num_classes=5)
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, 64, 64))  # BatchNorm statistics away from their initial values
    images = torch.randn(6, 3, 64, 64)
    skipped, dense = model.embed(images), model.embed(images, skip=False)
    assert skipped.embeddings.shape == (6, model.feature_channels)
    assert torch.allclose(skipped.embeddings.norm(dim=1), torch.ones(6), atol=1e-6)
    assert torch.equal(skipped.gate_values, dense.gate_values)
    assert torch.equal(skipped.gate_values, model.infer(images).gate_values)
    assert torch.allclose(skipped.embeddings, dense.embeddings, atol=1e-5)
    assert torch.equal(model.embed(images).embeddings, skipped.embeddings)
    bf16 = model.embed(images, precision="bf16")
    assert bf16.embeddings.dtype == torch.float32
    assert torch.allclose(bf16.embeddings.norm(dim=1), torch.ones(6), atol=1e-5)


def test_cosine_classifier_gives_cosines_and_a_logit_scale():
    torch.manual_seed(8)
    model = gated_model("resnet20", num_classes=6)
    cosine = build_model("resnet20", 6, width=0.25, classifier="cosine",
                         target_rates=middle_gated_schedule(num_blocks("resnet20"), 0.5, 1, 1))
    assert model.logit_scale == 1.0 and cosine.logit_scale == 30.0
    assert build_model("resnet20", 6, classifier="cosine", logit_scale=64.0).logit_scale == 64.0
    assert "fc.bias" not in cosine.state_dict()
    cosine.train()
    logits, gate_values = cosine(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 6) and bool((logits.abs() <= 1.0).all())
    torch.nn.functional.cross_entropy(cosine.logit_scale * logits, torch.arange(4)).backward()
    assert cosine.fc.weight.grad.abs().sum() > 0
    cosine.eval()
    assert bool((cosine.infer(torch.randn(3, 3, 32, 32) * 50).logits.abs() <= 1.0).all())
    with pytest.raises(Exception, match="classifier"):
        build_model("resnet20", 6, classifier="arcface")


def test_a_linear_classifier_checkpoint_still_loads():
    """The default model keeps the state-dict keys of checkpoints written before the classifier option."""
    torch.manual_seed(9)
    source = gated_model("resnet20", num_classes=4)
    saved = source.state_dict()
    assert {"fc.weight", "fc.bias"} <= set(saved)
    schedule = middle_gated_schedule(num_blocks("resnet20"), 0.5, 1, 1)
    model = build_model("resnet20", 4, width=0.25, target_rates=schedule)
    model.load_state_dict(saved)
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.infer(images).logits, source.infer(images).logits)
    with pytest.raises(RuntimeError, match="fc.bias"):
        build_model("resnet20", 4, width=0.25, classifier="cosine", target_rates=schedule).load_state_dict(saved)


def test_gated_residual_in_training_is_eq1_with_its_gradients():
    """In training, eq. 1's value and gradients (gate and branch weights) are those of relu(shortcut + gate * branch),
    and a closed gate still gets a gradient (the straight-through estimator needs the branch it closed)."""
    from facegraph.models.gated import gated_residual
    from facegraph.models.resnet import Bottleneck

    torch.manual_seed(0)
    block = Bottleneck(64, 16, 2)  # a projection shortcut
    x = torch.relu(torch.randn(4, 64, 8, 8))
    gate = torch.tensor([1.0, 0.0, 1.0, 0.0], requires_grad=True)
    out = gated_residual(block, x, gate)
    out.square().sum().backward()
    gate_grad, weight_grad = gate.grad.clone(), block.branch[0].weight.grad.clone()
    gate.grad = None
    block.zero_grad()
    plain = torch.relu(block.shortcut(x) + block.branch(x) * gate.view(-1, 1, 1, 1))
    plain.square().sum().backward()
    assert torch.allclose(out, plain)
    assert torch.allclose(gate_grad, gate.grad) and torch.allclose(weight_grad, block.branch[0].weight.grad)
    assert gate_grad[1] != 0 and gate_grad[3] != 0
