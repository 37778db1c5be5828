"""Margin softmax on cosine logits: ArcFace (additive angular margin) and CosFace (additive cosine margin)."""

from __future__ import annotations

import math

import pytest
import torch

from facegraph.errors import ConfigError
from facegraph.graphs.margins import margin_cross_entropy, margin_logits


def cosines(batch: int = 6, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    cosine = torch.rand(batch, classes, generator=generator) * 1.6 - 0.8
    targets = torch.randint(0, classes, (batch,), generator=generator)
    return cosine, targets


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_zero_margin_is_the_scaled_cosine(kind: str) -> None:
    cosine, targets = cosines()
    assert torch.allclose(margin_logits(cosine, targets, kind, margin=0.0, scale=30.0), 30.0 * cosine, atol=1e-5)


def test_cosface_subtracts_m_times_s_on_the_target_only() -> None:
    cosine, targets = cosines()
    difference = 16.0 * cosine - margin_logits(cosine, targets, "cosface", margin=0.35, scale=16.0)
    expected = torch.zeros_like(cosine)
    expected[torch.arange(len(targets)), targets] = 0.35 * 16.0
    assert torch.allclose(difference, expected, atol=1e-5)


def test_arcface_adds_the_angle_on_the_target_only() -> None:
    cosine, targets = cosines()  # |cos| <= 0.8, so theta + 0.5 < pi everywhere
    logits = margin_logits(cosine, targets, "arcface", margin=0.5, scale=64.0)
    rows = torch.arange(len(targets))
    for row, target in zip(rows.tolist(), targets.tolist()):
        assert logits[row, target].item() == pytest.approx(64.0 * math.cos(math.acos(cosine[row, target].item()) + 0.5), rel=1e-5)
    others = torch.ones_like(cosine, dtype=torch.bool)
    others[rows, targets] = False
    assert torch.equal(logits[others], 64.0 * cosine[others])


def test_arcface_fallback_past_pi() -> None:
    margin = 0.5
    cosine = torch.tensor([[-0.95, 0.1], [-0.3, 0.2]])  # acos(-0.95) + 0.5 > pi; acos(-0.3) + 0.5 < pi
    targets = torch.tensor([0, 0])
    logits = margin_logits(cosine, targets, "arcface", margin=margin, scale=1.0)
    assert logits[0, 0].item() == pytest.approx(-0.95 - margin * math.sin(margin), rel=1e-5)
    assert logits[1, 0].item() == pytest.approx(math.cos(math.acos(-0.3) + margin), rel=1e-5)
    # The fallback keeps the target logit decreasing in the angle across theta = pi - m.
    angles = torch.linspace(0.0, math.pi, 400)
    along = margin_logits(torch.cos(angles).unsqueeze(1), torch.zeros(400, dtype=torch.long), "arcface", margin=margin, scale=1.0)
    assert bool((along[1:, 0] <= along[:-1, 0] + 1e-6).all())


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_gradients_flow_and_stay_finite_at_cosine_one(kind: str) -> None:
    cosine, targets = cosines()
    cosine[0, targets[0]] = 1.0
    cosine.requires_grad_(True)
    loss = margin_cross_entropy(cosine, targets, kind, margin=0.4, scale=32.0)
    loss.backward()
    assert torch.isfinite(cosine.grad).all()
    assert (cosine.grad[torch.arange(len(targets)), targets][1:] < 0).all()  # raising a target cosine lowers the loss


def test_loss_is_the_hand_computed_cross_entropy_and_grows_with_the_margin() -> None:
    cosine, targets = torch.tensor([[0.6, 0.2, -0.1]]), torch.tensor([0])
    scale, margin = 10.0, 0.3
    target_logit = scale * math.cos(math.acos(0.6) + margin)
    expected = -target_logit + math.log(math.exp(target_logit) + math.exp(scale * 0.2) + math.exp(scale * -0.1))
    assert margin_cross_entropy(cosine, targets, "arcface", margin, scale).item() == pytest.approx(expected, rel=1e-5)
    batch, batch_targets = cosines(seed=2)
    for kind in ("arcface", "cosface"):
        losses = [margin_cross_entropy(batch, batch_targets, kind, m, 16.0).item() for m in (0.0, 0.2, 0.4)]
        assert losses[0] < losses[1] < losses[2]


def test_bad_settings_are_config_errors() -> None:
    cosine, targets = cosines()
    with pytest.raises(ConfigError, match="arcface, cosface"):
        margin_logits(cosine, targets, "sphereface")
    with pytest.raises(ConfigError, match="margin"):
        margin_logits(cosine, targets, "cosface", margin=-0.1)
    with pytest.raises(ConfigError, match="scale"):
        margin_logits(cosine, targets, "arcface", scale=0.0)
