"""Eq. 1: the gated residual network (ConvNet-AIG), with dense and truly skipping execution.

A per-block target-rate schedule decides which blocks carry a gate: a block with target rate 1 always runs and has no
gate parameters, so a schedule of all ones is a plain ResNet.
"""

from __future__ import annotations

import copy
from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from facegraph.errors import ConfigError
from facegraph.models.gates import Gate
from facegraph.models.precision import autocast
from facegraph.models.resnet import ResidualBlock, ResNet, add_relu, fold_stem


class GatedOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    gate_values: torch.Tensor  # (B, number of gated blocks), 0/1 in the forward pass


# The memory layouts a fused model can take, by name. oneDNN's native channels_last measured as fast as NCHW or faster
# on CPU for both benchmark models (the paper's ResNet-101 at 128 px and the CPU preset's narrow ResNet-50 at 64 px),
# fp32 and bf16, except one photo at a time through the paper's model, about 1.1x faster in NCHW (benchmarks/skip.py
# --layout); on CUDA it is the tensor-core layout for bf16/fp16. engine/layout.py times both on the machine at hand.
LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
DEFAULT_LAYOUT = "channels_last"
FUSED_MEMORY_FORMAT = LAYOUTS[DEFAULT_LAYOUT]


class Embeddings(NamedTuple):
    embeddings: torch.Tensor  # (B, feature_channels), L2-normalised pooled features (the penultimate layer)
    gate_values: torch.Tensor  # (B, number of gated blocks), 0/1


def gated_residual(block: ResidualBlock, x: torch.Tensor, gate_values: torch.Tensor) -> torch.Tensor:
    """Eq. 1, x_l = x_{l-1} + z_l(x_{l-1}) * F_l(x_{l-1}), computed densely (every image runs F).

    As in ResNet and ConvNet-AIG the sum passes through a ReLU and a downsampling block's shortcut is a projection;
    block inputs are outputs of a ReLU, so for an identity shortcut a closed gate returns x_{l-1} exactly.
    """
    branch = block.branch(x)  # (B, C_out, H', W')
    gate = gate_values.to(branch.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return add_relu(block.shortcut(x), branch * gate if torch.is_grad_enabled() else branch.mul_(gate))


def skipping_residual(block: ResidualBlock, x: torch.Tensor, gate_values: torch.Tensor) -> torch.Tensor:
    """Eq. 1 with real savings: F runs only on the images whose gate is open (inference only, no gradients).

    The open images are gathered by advanced indexing (index_select would drop a channels_last layout), their
    outputs written back in place with index_copy_; a block that is closed for the whole batch costs only its shortcut.
    """
    open_images = torch.nonzero(gate_values > 0.5).flatten()  # (n_open,)
    if open_images.numel() == x.shape[0]:
        return add_relu(block.shortcut(x), block.branch(x))
    if block.has_identity_shortcut:
        # x is a ReLU output (every block input is), so a closed image keeps x unchanged: only the open rows change.
        if open_images.numel() == 0:
            return x
        open_inputs = x[open_images]  # (n_open, C, H, W)
        opened = add_relu(open_inputs, block.branch(open_inputs))
        return x.index_copy_(0, open_images, opened.to(x.dtype))
    out = block.shortcut(x)  # (B, C_out, H', W')
    if open_images.numel() == 0:
        return torch.relu_(out)
    opened = add_relu(out[open_images], block.branch(x[open_images]))  # (n_open, C_out, H', W')
    return torch.relu_(out).index_copy_(0, open_images, opened.to(out.dtype))


class GatedResNet(ResNet):
    """A ResNet whose blocks with target rate < 1 carry a gate (eq. 1).

    `forward` returns logits and the gate values of the gated blocks, in block order. Gates sample (Gumbel,
    straight-through) in training mode and decide deterministically in evaluation mode unless `sample_gates=True`.

    `classifier="cosine"` puts a cosine classifier (heads.py) on the pooled features: the "logits" are then cosines in
    [-1, 1] for a margin loss, and softmax probabilities are softmax(logit_scale * logits). `logit_scale` (1.0 for a
    linear classifier) is configuration, not a parameter: it is not in the state dict.
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
        classifier: str = "linear",
        logit_scale: float = 1.0,
    ) -> None:
        super().__init__(arch, num_classes, width, classifier)
        num_blocks = len(self.blocks)
        target_rates = tuple(float(t) for t in (target_rates if target_rates is not None else [1.0] * num_blocks))
        if len(target_rates) != num_blocks:
            raise ConfigError(f"{arch} has {num_blocks} blocks but the schedule gives {len(target_rates)} target rates")
        if any(not 0.0 <= t <= 1.0 for t in target_rates):
            raise ConfigError(f"target rates must lie in [0, 1], got {target_rates}")
        if logit_scale <= 0:
            raise ConfigError(f"logit_scale must be > 0, got {logit_scale}")
        self.target_rates = target_rates
        self.gated_blocks = tuple(i for i, t in enumerate(target_rates) if t < 1.0)
        in_channels = self.block_input_channels()
        self.gates = nn.ModuleDict(
            {str(i): Gate(in_channels[i], gate_hidden, initial_open_rate) for i in self.gated_blocks}
        )
        self.temperature = temperature
        self.noise_scale = 1.0  # of the training-time Gumbel noise; the trainer anneals it (gumbel.final_noise)
        self.logit_scale = float(logit_scale)
        self.is_fused = False

    @property
    def num_gates(self) -> int:
        return len(self.gated_blocks)

    def gated_target_rates(self) -> torch.Tensor:
        """Target rate t_l of each gated block, in gate order (what eq. 2 compares the batch rates with)."""
        return torch.tensor([self.target_rates[i] for i in self.gated_blocks])

    def trunk(self, images: torch.Tensor, *, skip: bool = False,
              sample_gates: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stem and blocks: (B, 3, S, S) images -> the last feature map (B, C, h, w) and the (B, k) gate values."""
        x = self.stem(images)  # (B, C_stem, S / 4, S / 4); CIFAR stem: (B, C_stem, S, S)
        gate_values = []
        for index, block in enumerate(self.blocks):
            key = str(index)
            if key not in self.gates:
                x = block(x)  # (B, C_out, H / stride, W / stride)
                continue
            z = self.gates[key](x, self.temperature, sample_gates, self.noise_scale)  # (B,)
            gate_values.append(z)
            x = skipping_residual(block, x, z) if skip else gated_residual(block, x, z)
        gates = torch.stack(gate_values, dim=1) if gate_values else images.new_zeros(images.shape[0], 0)  # (B, k)
        return x, gates

    def forward(self, images: torch.Tensor, *, skip: bool = False, sample_gates: bool | None = None) -> GatedOutput:
        if skip and torch.is_grad_enabled() and self.training:
            raise ValueError("skipping execution is for inference: call model.eval() and run under torch.no_grad()")
        features, gates = self.trunk(images, skip=skip, sample_gates=sample_gates)
        return GatedOutput(self.head(features), gates)  # (B, num_classes), (B, k)

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout of the weights: channels_last once the model was moved there, else contiguous (NCHW)."""
        if self.stem[0].weight.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
        return torch.contiguous_format

    def _inference_layout(self, images: torch.Tensor) -> torch.Tensor:
        """The input in the model's memory format (a model moved to channels_last gets channels_last images)."""
        if self.memory_format == torch.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    @torch.no_grad()
    def infer(self, images: torch.Tensor, *, skip: bool = True, precision: str = "fp32") -> GatedOutput:
        """Deterministic inference (evaluation mode), skipping closed blocks unless `skip=False`.

        `precision="bf16"` runs under autocast; a model moved to channels_last gets its input converted to match.
        With a cosine classifier the logits are cosines: probabilities are softmax(logit_scale * logits).
        """
        self.eval()
        with autocast(precision, images.device.type):
            logits, gate_values = self(self._inference_layout(images), skip=skip)
        return GatedOutput(logits.float(), gate_values.float())

    @torch.no_grad()
    def embed(self, images: torch.Tensor, *, skip: bool = True, precision: str = "fp32") -> Embeddings:
        """Deterministic face embeddings for verification: the pooled features (before the classifier), L2-normalised
        in fp32, and the gate values; skipping and precision as in `infer`."""
        self.eval()
        with autocast(precision, images.device.type):
            features, gate_values = self.trunk(self._inference_layout(images), skip=skip)
            pooled = self.pooled(features)  # (B, feature_channels)
        return Embeddings(F.normalize(pooled.float(), dim=1), gate_values.float())

    def train(self, mode: bool = True) -> "GatedResNet":
        if mode and self.is_fused:
            raise RuntimeError("a model fused for inference cannot train: train the unfused model and fuse it again")
        return super().train(mode)

    def fuse_for_inference(self, memory_format: torch.memory_format | None = None) -> "GatedResNet":
        """An inference-only copy computing the same function faster; this model is left as it was.

        Every BatchNorm is folded into the convolution before it (the gates' into their first linear layer), the
        ImageNet stem runs its max-pool before the ReLU, and the copy is laid out in `memory_format`
        (default: FUSED_MEMORY_FORMAT). Residual sums and ReLUs already run in place whenever no gradient is
        recorded (`add_relu`); eager CPU execution has no conv+ReLU kernel to fuse into. Outputs equal this model's
        in evaluation mode up to fp32 rounding, with the same gate decisions unless a relevance lies within rounding
        of a tie. The copy refuses `train()`, and its parameters do not require gradients. For bf16-only inference,
        `.to(torch.bfloat16)` on the copy spares autocast the weight casts (same outputs as `precision="bf16"`).

        MAC accounting stays with the unfused model: `flops.cost_table` counts BatchNorm layers, which the copy no
        longer has (its conv and linear MACs are unchanged), so cost tables are computed on the model before fusing.
        """
        fused = copy.deepcopy(self).eval()
        fused.stem = fold_stem(fused.stem)
        for block in fused.blocks:
            block.fold_batchnorm()
        for gate in fused.gates.values():
            gate.fold_batchnorm()
        fused.requires_grad_(False)
        fused.eval()  # the layers folding created start in training mode; nothing in the copy may report training
        fused.is_fused = True
        return fused.to(memory_format=FUSED_MEMORY_FORMAT if memory_format is None else memory_format)
