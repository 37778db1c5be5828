"""Margin softmax losses for face recognition on cosine logits: ArcFace and CosFace.

Both take the (B, C) cosine matrix cos(theta_j) between L2-normalised embeddings and L2-normalised class weights
(a normalised linear layer, built elsewhere), penalise the target class' cosine by a margin, and scale all logits
by s before the softmax cross-entropy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facegraph.errors import ConfigError

MARGIN_KINDS = ("arcface", "cosface")


def margin_logits(cosine: torch.Tensor, targets: torch.Tensor, kind: str = "arcface", margin: float = 0.5,
                  scale: float = 64.0) -> torch.Tensor:
    """Scaled logits s * cos(theta_j) with the target class replaced by its margin-penalised cosine.

    arcface (Deng et al. 2019, ArcFace, eq. 3): target logit s * cos(theta_y + m), the additive angular margin.
    cos(theta + m) stops decreasing once theta + m > pi, so, as in the ArcFace reference code, targets with
    theta > pi - m use cos(theta) - m * sin(m) instead (monotone in theta).
    cosface (Wang et al. 2018, CosFace, eq. 4): target logit s * (cos(theta_y) - m), the additive cosine margin.
    With margin 0 both give s * cosine. Non-target logits are always s * cos(theta_j).
    """
    if kind not in MARGIN_KINDS:
        raise ConfigError(f"margin kind must be one of {', '.join(MARGIN_KINDS)}, got {kind!r}")
    if margin < 0 or scale <= 0:
        raise ConfigError(f"margin must be >= 0 and scale > 0, got margin={margin}, scale={scale}")
    target_mask = F.one_hot(targets, cosine.shape[1]).bool()
    if kind == "cosface":
        penalised = cosine - margin
    else:
        clamped = cosine.clamp(-1.0, 1.0)
        sine = (1.0 - clamped.pow(2)).clamp_min(1e-12).sqrt()
        shifted = clamped * math.cos(margin) - sine * math.sin(margin)
        penalised = torch.where(clamped > math.cos(math.pi - margin), shifted, clamped - margin * math.sin(margin))
    return scale * torch.where(target_mask, penalised, cosine)


def margin_cross_entropy(cosine: torch.Tensor, targets: torch.Tensor, kind: str = "arcface", margin: float = 0.5,
                         scale: float = 64.0) -> torch.Tensor:
    """Mean softmax cross-entropy of `margin_logits` (ArcFace eq. 3 / CosFace eq. 4 as a loss)."""
    return F.cross_entropy(margin_logits(cosine, targets, kind, margin, scale), targets)
