"""The gate of a ConvNet-AIG block: relevance score, then an on/off decision.

Training samples the decision with the Gumbel-max trick and passes gradients straight through a softmax relaxed by a
temperature (Veit & Belongie, 2018, Sec. 3). Evaluation is deterministic by default (open iff the "open" logit is
larger), so the same image always takes the same inference graph; sampling at test time is available on request.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_eval

CLOSED, OPEN = 0, 1


def straight_through_gumbel(relevance: torch.Tensor, temperature: float, noise_scale: float = 1.0) -> torch.Tensor:
    """Sample a hard 0/1 gate per row of `relevance` (B, 2 logits) with straight-through gradients.

    Forward: z = 1 iff logits + noise_scale x Gumbel noise favour OPEN (at scale 1 an exact sample of softmax(logits);
    towards 0 the deterministic decision that inference takes).
    Backward: the gradient of softmax((logits + noise) / temperature)[:, OPEN], so the temperature shapes learning.

    With two classes that softmax is a sigmoid of the logit gap, and the gap of two Gumbel samples -log(e) is
    log(e_closed / e_open): computed so, the sample works on (B,) instead of (B, 2) with the same draws and values
    (with the gate's layers in fp32, about 1 % of a training step, docs/results.md).
    """
    if temperature <= 0:
        raise ValueError(f"Gumbel temperature must be > 0, got {temperature}")
    if noise_scale < 0:
        raise ValueError(f"Gumbel noise scale must be >= 0, got {noise_scale}")
    exponential_draws = torch.empty_like(relevance).exponential_()  # (B, 2): Gumbel noise is -log of these
    gumbel_gap = (exponential_draws[:, CLOSED] / exponential_draws[:, OPEN]).log()  # (B,) g_open - g_closed
    open_logit = (relevance[:, OPEN] - relevance[:, CLOSED] + noise_scale * gumbel_gap) / temperature  # (B,)
    soft_open = torch.sigmoid(open_logit)
    hard_open = (open_logit > 0).to(soft_open.dtype)
    # (soft - soft.detach()) is exactly 0 in the forward pass, so the value stays exactly 0 or 1.
    return hard_open + (soft_open - soft_open.detach())


def deterministic_gate(relevance: torch.Tensor) -> torch.Tensor:
    """Open iff the OPEN logit is strictly larger (ties close: argmax picks the first index, CLOSED)."""
    return (relevance[:, OPEN] > relevance[:, CLOSED]).to(relevance.dtype)


class Gate(nn.Module):
    """Global average pool -> linear -> BatchNorm -> ReLU -> linear to 2 logits (CLOSED, OPEN)."""

    def __init__(self, in_channels: int, hidden: int = 16, initial_open_rate: float = 0.85) -> None:
        super().__init__()
        if not 0.0 < initial_open_rate < 1.0:
            raise ValueError(f"initial_open_rate must be in (0, 1), got {initial_open_rate}")
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 2)
        # With small weights the logit gap is the bias gap, and a Gumbel-max sample opens with probability
        # sigmoid(gap): this gap makes about `initial_open_rate` of the gates open when training starts.
        nn.init.normal_(self.fc2.weight, std=0.01)
        with torch.no_grad():
            self.fc2.bias.copy_(torch.tensor([0.0, math.log(initial_open_rate / (1.0 - initial_open_rate))]))

    def relevance(self, x: torch.Tensor) -> torch.Tensor:
        """The relevance score: (B, C, H, W) block input -> (B, 2) logits for (CLOSED, OPEN)."""
        # Global average pool as a sum, then a scale of the small (B, C) result: mean and adaptive pooling copy a bf16
        # map to fp32 and build a full-size gradient in backward; this halved the gates' pooling time in training.
        pooled = x.sum((2, 3)).to(self.fc1.weight.dtype) / (x.shape[2] * x.shape[3])  # (B, C)
        # The gate's layers run in their own precision even under autocast: products this small gain nothing from bf16,
        # and autocast would cast their weights on every call and again in backward.
        with torch.autocast(x.device.type, enabled=False):
            hidden = self.fc1(pooled)  # (B, hidden)
            if self.bn is not None:  # None once folded into fc1 (fold_batchnorm)
                hidden = self.bn(hidden)
            return self.fc2(torch.relu(hidden))  # (B, 2)

    def fold_batchnorm(self) -> None:
        """Fold the BatchNorm (its running statistics) into fc1, which gains a bias: for inference only."""
        self.fc1 = fuse_linear_bn_eval(self.fc1.eval(), self.bn.eval())
        self.bn = None

    def forward(self, x: torch.Tensor, temperature: float = 1.0, sample: bool | None = None,
                noise_scale: float = 1.0) -> torch.Tensor:
        """Gate values (B,) in {0, 1}. `sample` defaults to True in training mode and False in evaluation mode."""
        relevance = self.relevance(x).float()
        if self.training if sample is None else sample:
            return straight_through_gumbel(relevance, temperature, noise_scale)
        return deterministic_gate(relevance)
