"""What the paper adds on top of a network: which blocks are gated (gating), IIG masks, the losses (eq. 2-4),
read-out (eq. 5)."""

from facegraph.graphs.losses import LossParts, iig_loss, target_rate_loss, training_loss
from facegraph.graphs.masks import (
    MASK_SCHEMES, FeatureMasks, alternate_masks, block_masks, build_feature_masks, check_disjoint_features,
    explicit_masks,
)
from facegraph.graphs.readout import label_prototypes, read_out
from facegraph.graphs.gating import middle_blocks, middle_gated_schedule, paper_schedule, target_rate_schedule

__all__ = [
    "MASK_SCHEMES", "FeatureMasks", "LossParts", "alternate_masks", "block_masks", "build_feature_masks",
    "check_disjoint_features", "explicit_masks", "iig_loss", "label_prototypes", "middle_blocks",
    "middle_gated_schedule", "paper_schedule", "read_out", "target_rate_loss", "target_rate_schedule",
    "training_loss",
]
