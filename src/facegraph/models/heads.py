"""Classifier heads on the pooled features: a linear layer (softmax cross-entropy) or a cosine classifier for the
margin losses (ArcFace, CosFace; the margin and scale are applied by `facegraph.graphs.margins.margin_logits`).

Both are `nn.Linear` modules named `fc` on the network, so the MAC accounting (flops.py) counts them alike and a
linear checkpoint keeps its keys (`fc.weight`, `fc.bias`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facegraph.errors import ConfigError

CLASSIFIERS = ("linear", "cosine")


class CosineClassifier(nn.Linear):
    """cos(theta) between L2-normalised features and L2-normalised class weights, (B, in) -> (B, classes) in [-1, 1].

    The output is a cosine, not a logit: training applies a margin and a scale s to it, and softmax probabilities at
    inference are softmax(s * cosine) (the network's `logit_scale`).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(in_features, num_classes, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1))  # (B, num_classes)
        return cosine.clamp(-1.0, 1.0)  # rounding may step past +-1, where acos (ArcFace) is undefined


def make_classifier(kind: str, in_features: int, num_classes: int) -> nn.Linear:
    """The classifier head `kind` ("linear" or "cosine") from `in_features` pooled features to `num_classes`."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "cosine":
        return CosineClassifier(in_features, num_classes)
    raise ConfigError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {kind!r}")
