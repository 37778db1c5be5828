"""Honest compute accounting: a per-block cost table measured from the modules themselves.

Units are always named. A MAC is one multiply-accumulate; FLOPs = 2 x MACs. Three kinds of layer are counted:
- conv: Conv2d, (output elements) x (input channels / groups) x kernel area;
- linear: Linear layers (the classifier and the gates' two layers), in x out;
- norm: BatchNorm at inference, one multiply-add per element (scale and shift).
Element-wise ReLU, additions and pooling are not multiply-accumulates and are not counted. The paper's "2.54 GFLOPs"
for ResNet-101 at 128 px are the conv-only GMACs (2.547 G); ResNet-50 at 224 px costs 4.10 GMACs with all three kinds
(the commonly quoted 4.11 G; 4.09 G conv-only).

The cost of one image through a gated network (what evaluation reports) is
    always-run part (stem, head, shortcuts, ungated blocks, every gate) + sum over gated blocks of z_l * branch_l.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from facegraph.models.gated import GatedResNet

KINDS = ("conv", "linear", "norm")
CONV_ONLY = ("conv",)


@dataclass
class Cost:
    """MACs of one part of the network for one image, by kind of layer."""

    conv: int = 0
    linear: int = 0
    norm: int = 0

    def macs(self, kinds: tuple[str, ...] = KINDS) -> int:
        return sum(getattr(self, kind) for kind in kinds)


@dataclass
class BlockCost:
    index: int
    gated: bool
    branch: Cost = field(default_factory=Cost)  # F_l: skipped when the gate is closed
    shortcut: Cost = field(default_factory=Cost)  # projection shortcut: always runs
    gate: Cost = field(default_factory=Cost)  # the gate itself: always runs on a gated block


@dataclass
class CostTable:
    """Per-image cost of every part of a network at one input size."""

    image_size: int
    stem: Cost
    head: Cost
    blocks: list[BlockCost]

    def dense_macs(self, kinds: tuple[str, ...] = KINDS) -> int:
        """Every block running (the gates included, if any)."""
        return self.always_run_macs(kinds) + sum(b.branch.macs(kinds) for b in self.blocks if b.gated)

    def always_run_macs(self, kinds: tuple[str, ...] = KINDS) -> int:
        parts = [self.stem, self.head]
        for block in self.blocks:
            parts += [block.shortcut, block.gate] + ([] if block.gated else [block.branch])
        return sum(part.macs(kinds) for part in parts)

    def gated_branch_macs(self, kinds: tuple[str, ...] = KINDS) -> torch.Tensor:
        """(k,) MACs of each gated block's branch, in gate order."""
        return torch.tensor([b.branch.macs(kinds) for b in self.blocks if b.gated], dtype=torch.float64)

    def per_image_macs(self, gate_values: torch.Tensor, kinds: tuple[str, ...] = KINDS) -> torch.Tensor:
        """(B,) MACs actually spent on each image given its (B, k) gate values."""
        return self.always_run_macs(kinds) + gate_values.double() @ self.gated_branch_macs(kinds)

    def expected_macs(self, open_probability: float, kinds: tuple[str, ...] = KINDS) -> float:
        """Expected MACs when each gated block runs with probability `open_probability`."""
        return self.always_run_macs(kinds) + open_probability * float(self.gated_branch_macs(kinds).sum())

    def to_dict(self) -> dict:
        return asdict(self)


def _layer_cost(module: nn.Module, output: torch.Tensor) -> Cost:
    per_image_outputs = output[0].numel()
    if isinstance(module, nn.Conv2d):
        kernel_area = module.kernel_size[0] * module.kernel_size[1]
        return Cost(conv=per_image_outputs * (module.in_channels // module.groups) * kernel_area)
    if isinstance(module, nn.Linear):
        return Cost(linear=per_image_outputs * module.in_features)
    return Cost(norm=per_image_outputs)


def _part_of(name: str, table: CostTable) -> Cost:
    """Which entry of the table a module (by qualified name) belongs to."""
    head, _, rest = name.partition(".")
    if head == "stem":
        return table.stem
    if head == "fc":
        return table.head
    index, _, part = rest.partition(".")
    block = table.blocks[int(index)]
    if head == "gates":
        return block.gate
    return block.branch if part.startswith("branch") else block.shortcut


def cost_table(model: GatedResNet, image_size: int) -> CostTable:
    """Measure the per-image cost of every part of `model` at `image_size` x `image_size` with forward hooks.

    One dense forward in evaluation mode runs every module once (a closed gate multiplies, it does not skip).
    """
    gated = set(model.gated_blocks)
    table = CostTable(image_size, Cost(), Cost(), [BlockCost(i, i in gated) for i in range(len(model.blocks))])
    counted = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, counted):
            def hook(module: nn.Module, inputs: tuple, output: torch.Tensor, name: str = name) -> None:
                cost = _layer_cost(module, output)
                part = _part_of(name, table)
                for kind in KINDS:
                    setattr(part, kind, getattr(part, kind) + getattr(cost, kind))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return table
