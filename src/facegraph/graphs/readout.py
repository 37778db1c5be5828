"""Eq. 5: reading an image's attribute back from the gates it opened."""

from __future__ import annotations

import torch


def read_out(gate_values: torch.Tensor, label_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5: F(X) = C_p, p = argmin_i sum_j (1{G_j in M_{C_i}} - g_j)^2.

    gate_values: (B, k) over the feature's gates; label_masks: (p, k), one row per label (0/1 masks, or any
    per-label prototype such as mean open rates). Returns the label index per image (ties go to the lowest label
    index, so the read-out is deterministic) and the (B, p) squared distances.
    """
    distances = (gate_values.unsqueeze(1).float() - label_masks.unsqueeze(0).float()).pow(2).sum(dim=2)
    return distances.argmin(dim=1), distances


def label_prototypes(gate_values: torch.Tensor, label_codes: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Per-label mean gate vector (p, k): the masks of a model trained without IIG masks (ConvNet-AIG).

    Labels without any image get a row of +inf, at infinite distance, so eq. 5 never picks them. Means are float32,
    or float64 for float64 gates (the report's open rates keep double precision).
    """
    dtype = torch.promote_types(gate_values.dtype, torch.float32)
    prototypes = torch.full((num_labels, gate_values.shape[1]), float("inf"), dtype=dtype)
    for label in range(num_labels):
        chosen = gate_values[label_codes == label]
        if len(chosen):
            prototypes[label] = chosen.to(dtype).mean(dim=0)
    return prototypes
