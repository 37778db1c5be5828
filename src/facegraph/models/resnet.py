"""ResNet backbones: basic and bottleneck residual blocks, ImageNet-style and CIFAR-style layouts.

Every block exposes its residual branch F(x) and its shortcut separately, because the gated network (eq. 1) needs
to scale, or skip, the branch alone. The network itself is a flat list of blocks between a stem and a head, so a
block's position in that list is its number in the paper's schedules (ResNet-101: blocks 0..32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from facegraph.errors import ConfigError
from facegraph.models.heads import make_classifier


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

    def fold_batchnorm(self) -> None:
        """Fold every BatchNorm of the branch and the projection shortcut into its convolution (evaluation mode)."""
        self.branch = fold_batchnorm(self.branch)
        if not self.has_identity_shortcut:
            self.shortcut = fold_batchnorm(self.shortcut)

    def _branch_layers(self, in_channels: int, channels: int, stride: int) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_relu(self.shortcut(x), self.branch(x))  # (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)


def add_relu(shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """relu(shortcut + branch), the end of every residual block.

    Without autograd it runs in place on `branch`, which must be a fresh output of the residual branch: one tensor
    fewer to allocate and fill (measurably faster on CPU inference, benchmarks/skip.py).
    """
    if torch.is_grad_enabled() or branch.dtype != shortcut.dtype:
        return torch.relu(shortcut + branch)
    return branch.add_(shortcut).relu_()


def fold_batchnorm(layers: nn.Sequential) -> nn.Sequential:
    """The same layers with each Conv2d -> BatchNorm2d pair replaced by one convolution carrying a bias.

    conv(x) * gamma / sqrt(var + eps) + (beta - mean * gamma / sqrt(var + eps)) is a convolution with scaled weights;
    the running statistics are used, so the result equals the pair in evaluation mode only.
    """
    folded: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and folded and isinstance(folded[-1], nn.Conv2d):
            folded[-1] = fuse_conv_bn_eval(folded[-1].eval(), layer.eval())
        else:
            folded.append(layer)
    return nn.Sequential(*folded)


def fold_stem(stem: nn.Sequential) -> nn.Sequential:
    """The stem with its BatchNorm folded and, in the ImageNet stem, the max-pool moved before the ReLU.

    ReLU is monotonic, so max-pool(relu(x)) == relu(max-pool(x)) exactly (every 3x3/2 window holds a real pixel):
    the ReLU then touches a quarter of the elements.
    """
    layers = list(fold_batchnorm(stem))
    if [type(layer) for layer in layers] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]:
        layers[1], layers[2] = layers[2], layers[1]
    return nn.Sequential(*layers)


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
    """stem -> blocks (a flat ModuleList) -> global average pool -> classifier (linear or cosine, heads.py).

    Adaptive pooling makes any input size from 32 px work; `width` multiplies every channel count.
    """

    def __init__(self, arch: str, num_classes: int, width: float = 1.0, classifier: str = "linear") -> None:
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
        self.fc = make_classifier(classifier, in_channels, num_classes)
        self.classifier = classifier
        self.feature_channels = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def block_input_channels(self) -> list[int]:
        """Channels entering each block (what a gate on that block sees)."""
        return [block.branch[0].in_channels for block in self.blocks]

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool of the last feature map: (B, C, H, W) -> (B, C), the penultimate layer."""
        return torch.flatten(self.pool(features), 1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(features))  # (B, C, H, W) -> (B, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)  # (B, 3, S, S) -> (B, C, S / 4, S / 4) (ImageNet stem) or (B, C, S, S) (CIFAR stem)
        for block in self.blocks:
            x = block(x)  # (B, C_out, H / stride, W / stride)
        return self.head(x)  # (B, num_classes)
