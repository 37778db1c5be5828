"""The fused inference graph (GatedResNet.fuse_for_inference): same outputs and gate decisions, inference only."""

import pytest
import torch
from torch import nn

from facegraph.flops import cost_table
from facegraph.graphs import middle_gated_schedule
from facegraph.models import ARCHS, FUSED_MEMORY_FORMAT, GatedResNet, build_model, num_blocks


def _varied_images(count: int, size: int = 64) -> torch.Tensor:
    """Images of different brightness and contrast, so that pooled features (and gates) differ per image."""
    scale = torch.linspace(0.2, 3.0, count).view(-1, 1, 1, 1)
    shift = torch.linspace(-1.0, 1.0, count).flip(0).view(-1, 1, 1, 1)
    return torch.randn(count, 3, size, size) * scale + shift


def _trained_looking_model(arch: str) -> GatedResNet:
    """Every block but the last gated, BatchNorm statistics away from their initial values, and gate relevances with
    wide margins (so that fp32 rounding cannot flip a decision), in evaluation mode."""
    torch.manual_seed(0)
    model = build_model(arch, 9, width=0.25, target_rates=middle_gated_schedule(num_blocks(arch), 0.5, 0, 1))
    model.train()
    with torch.no_grad():
        model(_varied_images(16))
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):  # non-trivial affine parameters to fold
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for gate in model.gates.values():
            nn.init.normal_(gate.fc2.weight, std=10.0)
            nn.init.zeros_(gate.fc2.bias)
    return model.eval()


def _assert_same_logits(fused: torch.Tensor, reference: torch.Tensor) -> None:
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_fused_equals_unfused_dense_and_skipping(arch):
    model = _trained_looking_model(arch)
    fused = model.fuse_for_inference()
    images = _varied_images(12)
    reference = model.infer(images, skip=False)
    for skip in (False, True):
        out = fused.infer(images, skip=skip)
        assert torch.equal(out.gate_values, reference.gate_values)
        _assert_same_logits(out.logits, reference.logits)
        one = fused.infer(images[3:4], skip=skip)
        assert torch.equal(one.gate_values[0], reference.gate_values[3])
        _assert_same_logits(one.logits[0], reference.logits[3])
    embedded, expected = fused.embed(images), model.embed(images, skip=False)
    assert torch.equal(embedded.gate_values, expected.gate_values)
    torch.testing.assert_close(embedded.embeddings, expected.embeddings, rtol=1e-4, atol=1e-5)


def test_fusion_removes_every_batchnorm_and_leaves_the_source_model_alone():
    model = _trained_looking_model("resnet50")
    fused = model.fuse_for_inference()
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in fused.modules())
    assert all(gate.bn is None and gate.fc1.bias is not None for gate in fused.gates.values())
    assert [type(m) for m in fused.stem] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU]  # max-pool before the ReLU
    assert fused.stem[0].weight.is_contiguous(memory_format=FUSED_MEMORY_FORMAT)
    assert not any(m.training for m in fused.modules())  # folded layers too (torch.jit.freeze needs this)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0 and not model.is_fused
    model.train()  # the source model still trains
    assert all(p.requires_grad for p in model.parameters())


def test_fused_model_refuses_training_and_backward():
    fused = build_model("resnet20", 3, target_rates=[0.5] * 9).eval().fuse_for_inference()
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()
    logits, _ = fused(torch.randn(2, 3, 32, 32))
    with pytest.raises(RuntimeError):
        logits.sum().backward()


def test_fused_skipping_runs_branches_on_open_images_only():
    model = _trained_looking_model("resnet50").fuse_for_inference()
    seen = {}
    for index in model.gated_blocks:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.blocks[index].branch)
        model.blocks[index].branch.register_forward_hook(
            lambda module, inputs, output, index=index: seen.__setitem__(index, inputs[0].shape[0]))
    gate_values = model.infer(_varied_images(12), skip=True).gate_values
    rates = gate_values.mean(0)
    assert ((rates > 0) & (rates < 1)).any(), "the test needs blocks that are open for some images only"
    for column, index in enumerate(model.gated_blocks):
        assert seen.get(index, 0) == int(gate_values[:, column].sum())


def test_fused_model_keeps_the_unfused_conv_and_linear_accounting():
    """Cost tables come from the unfused model: the fused one has no BatchNorm left to count, the rest is equal."""
    model = _trained_looking_model("resnet18")
    table, fused_table = cost_table(model, 64), cost_table(model.fuse_for_inference(), 64)
    assert fused_table.dense_macs(("conv", "linear")) == table.dense_macs(("conv", "linear"))
    assert fused_table.dense_macs(("norm",)) == 0 < table.dense_macs(("norm",))


def test_fused_bf16_agrees_with_unfused_bf16():
    model = _trained_looking_model("resnet18")
    images = _varied_images(8)
    reference = model.infer(images, skip=False, precision="bf16")
    fast = model.fuse_for_inference().infer(images, skip=True, precision="bf16")
    assert fast.logits.dtype == torch.float32
    assert (fast.gate_values == reference.gate_values).float().mean() > 0.9
    assert torch.allclose(fast.logits, reference.logits, rtol=0.1, atol=0.1 * float(reference.logits.abs().max()))
