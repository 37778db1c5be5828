"""Models: ResNet backbones (resnet.py), gates (gates.py), classifier heads (heads.py), the gated network of
eq. 1 (gated.py) and mixed-precision autocast (precision.py)."""

from __future__ import annotations

from typing import Sequence

from facegraph.models.gated import (
    DEFAULT_LAYOUT, FUSED_MEMORY_FORMAT, LAYOUTS, Embeddings, GatedOutput, GatedResNet, gated_residual,
    skipping_residual,
)
from facegraph.models.gates import Gate, deterministic_gate, straight_through_gumbel
from facegraph.models.heads import CLASSIFIERS, CosineClassifier
from facegraph.models.precision import PRECISIONS, autocast
from facegraph.models.resnet import ARCHS, ResNet, arch_spec

DEFAULT_COSINE_SCALE = 30.0  # s of CosFace; ArcFace uses 64 on large datasets

__all__ = [
    "ARCHS", "CLASSIFIERS", "DEFAULT_COSINE_SCALE", "DEFAULT_LAYOUT", "FUSED_MEMORY_FORMAT", "LAYOUTS", "PRECISIONS",
    "CosineClassifier", "Embeddings", "Gate", "GatedOutput", "GatedResNet", "ResNet", "arch_spec", "autocast",
    "build_model", "deterministic_gate", "gated_residual", "num_blocks", "skipping_residual", "stage_first_blocks",
    "straight_through_gumbel",
]


def num_blocks(arch: str) -> int:
    """Residual blocks in `arch` (ResNet-101: 33), the length of its target-rate schedule."""
    return sum(arch_spec(arch).blocks_per_stage)


def stage_first_blocks(arch: str) -> list[int]:
    """Index of each stage's first block (ResNet-50: 0, 3, 7, 13); all but the first stage's downsample."""
    counts = arch_spec(arch).blocks_per_stage
    return [sum(counts[:stage]) for stage in range(len(counts))]


def build_model(
    arch: str,
    num_classes: int,
    *,
    width: float = 1.0,
    target_rates: Sequence[float] | None = None,
    gate_hidden: int = 16,
    initial_open_rate: float = 0.85,
    temperature: float = 1.0,
    classifier: str = "linear",
    logit_scale: float | None = None,
) -> GatedResNet:
    """The one model factory: a ResNet when `target_rates` is None (or all ones), else a ConvNet-AIG/IIG.

    `classifier` is "linear" (the default; checkpoints keep their keys) or "cosine" (cosines for a margin loss);
    `logit_scale` defaults to 1.0 for linear and DEFAULT_COSINE_SCALE for cosine.
    """
    if logit_scale is None:
        logit_scale = DEFAULT_COSINE_SCALE if classifier == "cosine" else 1.0
    return GatedResNet(
        arch, num_classes, target_rates, width=width, gate_hidden=gate_hidden,
        initial_open_rate=initial_open_rate, temperature=temperature, classifier=classifier, logit_scale=logit_scale,
    )
