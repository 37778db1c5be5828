"""The FLOPs accounting and the skipping inference path."""

import json

import pytest
import torch

from facegraph.cli import main
from facegraph.flops import CONV_ONLY, KINDS, cost_table
from facegraph.graphs import middle_gated_schedule, paper_schedule
from facegraph.models import ARCHS, build_model, num_blocks


def test_resnet101_at_128_is_the_papers_2_547_conv_gmacs():
    table = cost_table(build_model("resnet101", 750), 128)
    assert table.dense_macs(CONV_ONLY) / 1e9 == pytest.approx(2.547, rel=0.005)


def test_resnet50_at_224_is_the_standard_4_11_gmacs():
    table = cost_table(build_model("resnet50", 1000), 224)
    assert table.dense_macs(KINDS) / 1e9 == pytest.approx(4.11, rel=0.005)


def test_conv_macs_match_a_hand_count():
    # resnet20, 32 px: stem 3->16 3x3 at 32x32, then 3 stages of 3 basic blocks; projections at stages 2 and 3.
    hand = 32 * 32 * 16 * 3 * 9
    hand += 6 * 32 * 32 * 16 * 16 * 9
    hand += 16 * 16 * 32 * 16 * 9 + 5 * 16 * 16 * 32 * 32 * 9 + 16 * 16 * 32 * 16
    hand += 8 * 8 * 64 * 32 * 9 + 5 * 8 * 8 * 64 * 64 * 9 + 8 * 8 * 64 * 32
    assert cost_table(build_model("resnet20", 10), 32).dense_macs(CONV_ONLY) == hand


def test_per_image_cost_follows_the_gates():
    model = build_model("resnet101", 750, target_rates=paper_schedule(0.5))
    table = cost_table(model, 64)
    gate_values = torch.zeros(3, 23)
    gate_values[1] = 1.0
    gate_values[2, :10] = 1.0
    per_image = table.per_image_macs(gate_values)
    assert per_image[0].item() == table.always_run_macs()
    assert per_image[1].item() == table.dense_macs()
    branches = table.gated_branch_macs()
    assert per_image[2].item() == pytest.approx(table.always_run_macs() + branches[:10].sum().item())
    assert table.expected_macs(0.5) == pytest.approx(table.always_run_macs() + 0.5 * branches.sum().item())
    # the gates cost something, and only on gated blocks
    assert all((b.gate.macs() > 0) == b.gated for b in table.blocks)
    assert table.dense_macs() > cost_table(build_model("resnet101", 750), 64).dense_macs()


def test_flops_command(capsys):
    assert main(["flops", "--arch", "resnet101", "--image-size", "128", "--num-classes", "750",
                 "--target", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dense_gmacs"]["conv_only"] == pytest.approx(2.547, rel=0.005)
    assert report["schedule"]["gated_blocks"] == 23
    assert report["dense_gmacs"]["conv_only"] > report["expected_gmacs"]["conv_only"] > 0.5 * report["dense_gmacs"]["conv_only"]
    assert main(["flops", "--arch", "resnet50", "--image-size", "224", "--num-classes", "1000"]) == 0
    text = capsys.readouterr().out
    assert "GMACs" in text and "conv only" in text and "not counted" in text


def _varied_images(count: int, size: int = 64) -> torch.Tensor:
    """Images of different brightness and contrast, so that pooled features (and gates) differ per image."""
    scale = torch.linspace(0.2, 3.0, count).view(-1, 1, 1, 1)
    shift = torch.linspace(-1.0, 1.0, count).flip(0).view(-1, 1, 1, 1)
    return torch.randn(count, 3, size, size) * scale + shift


def _model_with_mixed_gates(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, 9, width=0.25, target_rates=middle_gated_schedule(num_blocks(arch), 0.5, 0, 1))
    model.train()
    with torch.no_grad():
        model(_varied_images(16))  # realistic BatchNorm statistics
        for gate in model.gates.values():  # a relevance with wide margins, so that rounding never flips a gate
            torch.nn.init.normal_(gate.fc2.weight, std=10.0)
            torch.nn.init.zeros_(gate.fc2.bias)
    return model.eval()


def _replay_gates(model: torch.nn.Module, pattern: torch.Tensor) -> None:
    """Make gate c return pattern[:, c] (row i for the i-th image of the batch)."""
    for column, gate in enumerate(model.gates.values()):
        gate.forward = lambda x, temperature=1.0, sample=None, noise_scale=1.0, column=column: pattern[: x.shape[0], column]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_skipping_matches_dense_for_every_architecture(arch):
    torch.manual_seed(1)
    model = build_model(arch, 9, width=0.25, target_rates=middle_gated_schedule(num_blocks(arch), 0.5, 0, 1)).eval()
    images = torch.randn(12, 3, 64, 64)
    pattern = (torch.rand(12, model.num_gates) < 0.5).float()
    pattern[:, 0] = 0.0  # closed for the whole batch
    pattern[:, -1] = 1.0  # open for the whole batch
    _replay_gates(model, pattern)
    with torch.no_grad():
        dense = model(images)
        skipped = model(images, skip=True)
        single = [model(images[i:i + 1], skip=True) for i in (0,)]
    assert torch.equal(skipped.gate_values, pattern)
    assert torch.allclose(dense.logits, skipped.logits, atol=1e-4, rtol=1e-4)
    assert torch.allclose(single[0].logits[0], dense.logits[0], atol=1e-4, rtol=1e-4)


def test_skipping_with_learned_gates_takes_the_same_graph():
    model = _model_with_mixed_gates("resnet50")
    images = _varied_images(12)
    with torch.no_grad():
        dense = model(images)
        skipped = model(images, skip=True)
        single = [model(images[i:i + 1], skip=True) for i in range(4)]
    rates = dense.gate_values.mean(0)
    assert ((rates > 0) & (rates < 1)).any(), "the test needs blocks that are open for some images only"
    assert torch.equal(dense.gate_values, skipped.gate_values)
    assert torch.allclose(dense.logits, skipped.logits, atol=1e-4, rtol=1e-4)
    for i, one in enumerate(single):
        assert torch.equal(one.gate_values[0], dense.gate_values[i])
        assert torch.allclose(one.logits[0], dense.logits[i], atol=1e-4, rtol=1e-4)


def test_skipping_runs_branches_on_open_images_only():
    model = _model_with_mixed_gates("resnet50")
    seen = {}
    for index in model.gated_blocks:
        model.blocks[index].branch.register_forward_hook(
            lambda module, inputs, output, index=index: seen.__setitem__(index, inputs[0].shape[0]))
    with torch.no_grad():
        gate_values = model(_varied_images(12), skip=True).gate_values
    for column, index in enumerate(model.gated_blocks):
        opened = int(gate_values[:, column].sum())
        assert seen.get(index, 0) == opened


def test_skipping_refuses_training_mode():
    model = build_model("resnet20", 3, target_rates=[0.5] * 9)
    model.train()
    with pytest.raises(ValueError, match="inference"):
        model(torch.randn(2, 3, 32, 32), skip=True)


def test_infer_bf16_and_channels_last_agree_with_fp32():
    model = _model_with_mixed_gates("resnet18")
    images = _varied_images(8)
    reference = model.infer(images, skip=False)
    model.to(memory_format=torch.channels_last)
    fast = model.infer(images, skip=True)
    assert torch.allclose(fast.logits, reference.logits, atol=1e-3, rtol=1e-3)
    bf16 = model.infer(images, skip=True, precision="bf16")
    assert bf16.logits.dtype == torch.float32
    agreement = (bf16.gate_values == reference.gate_values).float().mean()
    assert agreement > 0.9
    # bf16 computes the same function: logits within a bf16 tolerance (8-bit mantissa, eps 2^-8 ~ 0.004, accumulated
    # over the network: 5% of each image's logit norm), same top class; compared where every gate decision agrees
    same_gates = (bf16.gate_values == reference.gate_values).all(1)
    assert same_gates.sum() >= 6
    error = (bf16.logits - reference.logits).norm(dim=1) / reference.logits.norm(dim=1)
    assert (error[same_gates] < 0.05).all(), error
    assert (bf16.logits.argmax(1) == reference.logits.argmax(1))[same_gates].float().mean() >= 0.85
    # same for the embeddings: unit vectors whose cosine to the fp32 embedding is near 1
    dense = model.embed(images, skip=False)
    half = model.embed(images, skip=True, precision="bf16")
    assert torch.equal(half.gate_values, bf16.gate_values)
    cosine = (half.embeddings * dense.embeddings).sum(1)
    assert (cosine[same_gates] > 0.99).all(), cosine
