"""ResNet backbones: basic and bottleneck residual blocks, ImageNet-style and CIFAR-style layouts.

Every block exposes its residual branch F(x) and its shortcut separately, because the gated network (eq. 1) needs
to scale, or skip, the branch alone. The network itself is a flat list of blocks between a stem and a head, so a
block's position in that list is its number in the paper's schedules (ResNet-101: blocks 0..32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facegraph.errors import ConfigError


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_channels)]


class ResidualBlock(nn.Module):
    """out = relu(shortcut(x) + branch(x)); subclasses build `branch` (ending in a BatchNorm) and `shortcut`."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.branch = nn.Sequential(*self._branch_layers(in_channels, channels, stride))
        # The projection shortcut is not part of F: it runs even when a gate closes the block.
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(*_conv_bn(in_channels, out_channels, 1, stride))
        else:
            self.shortcut = nn.Identity()

    @property
    def has_identity_shortcut(self) -> bool:
        return isinstance(self.shortcut, nn.Identity)

    def _branch_layers(self, in_channels: int, channels: int, stride: int) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.shortcut(x) + self.branch(x))


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR ResNets)."""

    expansion = 1

    def _branch_layers(self, in_channels: int, channels: int, stride: int) -> list[nn.Module]:
        return [
            *_conv_bn(in_channels, channels, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(channels, channels, 3),
        ]


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (carrying the stride, as in torchvision's ResNet v1.5), 1x1 expand by 4."""

    expansion = 4

    def _branch_layers(self, in_channels: int, channels: int, stride: int) -> list[nn.Module]:
        return [
            *_conv_bn(in_channels, channels, 1), nn.ReLU(inplace=True),
            *_conv_bn(channels, channels, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(channels, channels * self.expansion, 1),
        ]


@dataclass(frozen=True)
class ArchSpec:
    block: type[ResidualBlock]
    blocks_per_stage: tuple[int, ...]
    stage_channels: tuple[int, ...]
    stem: str  # "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (one 3x3 conv)


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), "imagenet"),
    "resnet34": ArchSpec(BasicBlock, (3, 4, 6, 3), (64, 128, 256, 512), "imagenet"),
    "resnet50": ArchSpec(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), "imagenet"),
    "resnet101": ArchSpec(Bottleneck, (3, 4, 23, 3), (64, 128, 256, 512), "imagenet"),
    "resnet152": ArchSpec(Bottleneck, (3, 8, 36, 3), (64, 128, 256, 512), "imagenet"),
    "resnet20": ArchSpec(BasicBlock, (3, 3, 3), (16, 32, 64), "cifar"),
    "resnet32": ArchSpec(BasicBlock, (5, 5, 5), (16, 32, 64), "cifar"),
    "resnet56": ArchSpec(BasicBlock, (9, 9, 9), (16, 32, 64), "cifar"),
    "resnet110": ArchSpec(BasicBlock, (18, 18, 18), (16, 32, 64), "cifar"),
}


def arch_spec(arch: str) -> ArchSpec:
    try:
        return ARCHS[arch]
    except KeyError:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}") from None


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class ResNet(nn.Module):
    """stem -> blocks (a flat ModuleList) -> global average pool -> linear classifier.

    Adaptive pooling makes any input size from 32 px work; `width` multiplies every channel count.
    """

    def __init__(self, arch: str, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if width <= 0:
            raise ConfigError(f"width must be > 0, got {width}")
        spec = arch_spec(arch)
        self.arch = arch
        stem_channels = _scaled(spec.stage_channels[0], width)
        if spec.stem == "imagenet":
            self.stem = nn.Sequential(
                *_conv_bn(3, stem_channels, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1)
            )
        else:
            self.stem = nn.Sequential(*_conv_bn(3, stem_channels, 3), nn.ReLU(inplace=True))
        blocks: list[ResidualBlock] = []
        in_channels = stem_channels
        for stage, (count, channels) in enumerate(zip(spec.blocks_per_stage, spec.stage_channels)):
            channels = _scaled(channels, width)
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(spec.block(in_channels, channels, stride))
                in_channels = channels * spec.block.expansion
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self.feature_channels = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def block_input_channels(self) -> list[int]:
        """Channels entering each block (what a gate on that block sees)."""
        return [block.branch[0].in_channels for block in self.blocks]

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(features), 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
