"""Eq. 1: the gated residual network (ConvNet-AIG), with dense and truly skipping execution.

A per-block target-rate schedule decides which blocks carry a gate: a block with target rate 1 always runs and has no
gate parameters, so a schedule of all ones is a plain ResNet.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from facegraph.errors import ConfigError
from facegraph.models.gates import Gate
from facegraph.models.precision import autocast
from facegraph.models.resnet import ResidualBlock, ResNet


class GatedOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    gate_values: torch.Tensor  # (B, number of gated blocks), 0/1 in the forward pass


def gated_residual(block: ResidualBlock, x: torch.Tensor, gate_values: torch.Tensor) -> torch.Tensor:
    """Eq. 1, x_l = x_{l-1} + z_l(x_{l-1}) * F_l(x_{l-1}), computed densely (every image runs F).

    As in ResNet and ConvNet-AIG the sum passes through a ReLU and a downsampling block's shortcut is a projection;
    block inputs are outputs of a ReLU, so for an identity shortcut a closed gate returns x_{l-1} exactly.
    """
    branch = block.branch(x)
    return torch.relu(block.shortcut(x) + gate_values.to(branch.dtype).view(-1, 1, 1, 1) * branch)


def skipping_residual(block: ResidualBlock, x: torch.Tensor, gate_values: torch.Tensor) -> torch.Tensor:
    """Eq. 1 with real savings: F runs only on the images whose gate is open (inference only, no gradients).

    The open images are gathered with index_select, their outputs written back in place with index_copy_; a block
    that is closed for the whole batch costs only its shortcut.
    """
    open_images = torch.nonzero(gate_values > 0.5).flatten()
    if open_images.numel() == x.shape[0]:
        return torch.relu(block.shortcut(x) + block.branch(x))
    if block.has_identity_shortcut:
        # x is a ReLU output (every block input is), so a closed image keeps x unchanged: only the open rows change.
        if open_images.numel() == 0:
            return x
        open_inputs = x.index_select(0, open_images)
        opened = torch.relu(open_inputs + block.branch(open_inputs))
        return x.index_copy_(0, open_images, opened.to(x.dtype))
    out = block.shortcut(x)
    if open_images.numel() == 0:
        return torch.relu_(out)
    opened = torch.relu(out.index_select(0, open_images) + block.branch(x.index_select(0, open_images)))
    return torch.relu_(out).index_copy_(0, open_images, opened.to(out.dtype))


class GatedResNet(ResNet):
    """A ResNet whose blocks with target rate < 1 carry a gate (eq. 1).

    `forward` returns logits and the gate values of the gated blocks, in block order. Gates sample (Gumbel,
    straight-through) in training mode and decide deterministically in evaluation mode unless `sample_gates=True`.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        target_rates: Sequence[float] | None = None,
        width: float = 1.0,
        gate_hidden: int = 16,
        initial_open_rate: float = 0.85,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(arch, num_classes, width)
        num_blocks = len(self.blocks)
        target_rates = tuple(float(t) for t in (target_rates if target_rates is not None else [1.0] * num_blocks))
        if len(target_rates) != num_blocks:
            raise ConfigError(f"{arch} has {num_blocks} blocks but the schedule gives {len(target_rates)} target rates")
        if any(not 0.0 <= t <= 1.0 for t in target_rates):
            raise ConfigError(f"target rates must lie in [0, 1], got {target_rates}")
        self.target_rates = target_rates
        self.gated_blocks = tuple(i for i, t in enumerate(target_rates) if t < 1.0)
        in_channels = self.block_input_channels()
        self.gates = nn.ModuleDict(
            {str(i): Gate(in_channels[i], gate_hidden, initial_open_rate) for i in self.gated_blocks}
        )
        self.temperature = temperature

    @property
    def num_gates(self) -> int:
        return len(self.gated_blocks)

    def gated_target_rates(self) -> torch.Tensor:
        """Target rate t_l of each gated block, in gate order (what eq. 2 compares the batch rates with)."""
        return torch.tensor([self.target_rates[i] for i in self.gated_blocks])

    def forward(self, images: torch.Tensor, *, skip: bool = False, sample_gates: bool | None = None) -> GatedOutput:
        if skip and torch.is_grad_enabled() and self.training:
            raise ValueError("skipping execution is for inference: call model.eval() and run under torch.no_grad()")
        x = self.stem(images)
        gate_values = []
        for index, block in enumerate(self.blocks):
            key = str(index)
            if key not in self.gates:
                x = block(x)
                continue
            z = self.gates[key](x, self.temperature, sample_gates)
            gate_values.append(z)
            x = skipping_residual(block, x, z) if skip else gated_residual(block, x, z)
        gates = torch.stack(gate_values, dim=1) if gate_values else images.new_zeros(images.shape[0], 0)
        return GatedOutput(self.head(x), gates)

    @torch.no_grad()
    def infer(self, images: torch.Tensor, *, skip: bool = True, precision: str = "fp32") -> GatedOutput:
        """Deterministic inference (evaluation mode), skipping closed blocks unless `skip=False`.

        `precision="bf16"` runs under autocast; a model moved to channels_last gets its input converted to match.
        """
        self.eval()
        if self.stem[0].weight.is_contiguous(memory_format=torch.channels_last):
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(precision, images.device.type):
            logits, gate_values = self(images, skip=skip)
        return GatedOutput(logits.float(), gate_values.float())
