"""The training losses: target rate (eq. 2), the composite loss (eq. 3), the IIG loss (eq. 4) and distillation from a
dense teacher (for warm-started gated models)."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from facegraph.graphs.margins import margin_cross_entropy
from facegraph.graphs.masks import FeatureMasks


def target_rate_loss(gate_values: torch.Tensor, target_rates: torch.Tensor) -> torch.Tensor:
    """Eq. 2: L_target = sum_l (zbar_l - t_l)^2, zbar_l the batch mean of gate l.

    gate_values: (B, k) gate values of the k gated blocks; target_rates: (k,).
    """
    batch_rates = gate_values.mean(dim=0)
    return (batch_rates - target_rates.to(batch_rates)).pow(2).sum()


def iig_loss(gate_values: torch.Tensor, label_codes: torch.Tensor, masks: FeatureMasks,
             balanced: bool = False) -> torch.Tensor:
    """Eq. 4: L_IIG(F) = sum_i sum_j (1{G_j in M_{c_i}} - g_ij)^2 for one feature F.

    Normalisation (the paper leaves it open): j runs over the feature's own gates (the union of its label masks, all
    gates in the paper's single-feature model), and the sum over images is divided by the number of images whose
    label is known, so the loss is the mean squared mask distance of eq. 5 and does not grow with the batch size.
    With `balanced`, each label present in the batch weighs the same (its images share 1 / labels present), so a
    majority label cannot win by sheer numbers. Images with label code -1 (unknown) contribute nothing; a batch
    without any known label gives 0.
    """
    known = label_codes >= 0
    feature_gates = gate_values[:, masks.feature_gates]
    if not bool(known.any()):
        return feature_gates.sum() * 0.0
    codes = label_codes[known]
    wanted = masks.matrix().to(feature_gates)[codes]
    distances = (wanted - feature_gates[known]).pow(2).sum(dim=1)
    if not balanced:
        return distances.mean()
    label_counts = torch.bincount(codes, minlength=len(masks.labels)).to(distances)
    weights = 1.0 / (label_counts[codes] * int((label_counts > 0).sum()))
    return (weights * distances).sum()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015): T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged
    over the batch. The T^2 keeps the gradient's scale independent of T. Both logits are (B, classes), before softmax
    (a cosine classifier's cosines times its scale); the teacher's carry no gradient."""
    if temperature <= 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * temperature ** 2


class LossParts(NamedTuple):
    total: torch.Tensor
    cross_entropy: torch.Tensor
    target: torch.Tensor
    iig: torch.Tensor
    distill: torch.Tensor


def training_loss(
    logits: torch.Tensor,
    identities: torch.Tensor,
    gate_values: torch.Tensor,
    target_rates: torch.Tensor,
    *,
    target_weight: float = 1.0,
    iig_weight: float = 0.0,
    iig_features: Sequence[tuple[FeatureMasks, torch.Tensor]] = (),
    iig_balanced: bool = False,
    target_gates: torch.Tensor | None = None,
    margin: str | None = None,
    margin_m: float = 0.0,
    margin_scale: float = 1.0,
    teacher_logits: torch.Tensor | None = None,
    distill_weight: float = 0.0,
    distill_temperature: float = 1.0,
) -> LossParts:
    """Eq. 3 generalised: L = L_CE + target_weight * L_target + iig_weight * sum_F L_IIG(F) + distill_weight * L_KD.

    The paper's ConvNet-AIG is target_weight=1, iig_weight=0; its ConvNet-IIG replaces the target loss
    (target_weight=0, iig_weight>0); both together are allowed. `iig_features` pairs each feature's masks with the
    per-image label codes of that feature; `iig_balanced` weighs each label equally (see iig_loss).
    `target_gates` limits the target loss to some gates (indices into the k gates; default all): an IIG model keeps it
    on the gates no mask covers. `target_rates` holds one rate per gate either way. With `margin` ("arcface" or
    "cosface"), `logits` are the cosines of a cosine classifier and L_CE is the margin softmax of
    facegraph.graphs.margins (margin `margin_m`, scale `margin_scale`). With `teacher_logits` (a dense run's, on the
    same images) and `distill_weight` > 0, L_KD is `distillation_loss` at `distill_temperature`; a cosine classifier's
    logits are scaled by `margin_scale` first, as its softmax is.
    """
    if margin is None:
        cross_entropy = F.cross_entropy(logits, identities)
    else:
        cross_entropy = margin_cross_entropy(logits, identities, margin, margin_m, margin_scale)
    zero = cross_entropy.new_zeros(())
    has_gates = gate_values.shape[1] > 0
    if target_gates is not None:
        gate_values_for_target, target_rates = gate_values[:, target_gates], target_rates[target_gates]
    else:
        gate_values_for_target = gate_values
    has_target = gate_values_for_target.shape[1] > 0 and target_weight
    target = target_rate_loss(gate_values_for_target, target_rates) if has_target else zero
    iig = zero
    if has_gates and iig_weight:
        iig = torch.stack([iig_loss(gate_values, codes, masks, iig_balanced) for masks, codes in iig_features]).sum() if iig_features else zero
    distill = zero
    if teacher_logits is not None and distill_weight:
        scale = margin_scale if margin is not None else 1.0
        distill = distillation_loss(logits * scale, teacher_logits, distill_temperature)
    total = cross_entropy + target_weight * target + iig_weight * iig + distill_weight * distill
    return LossParts(total, cross_entropy, target, iig, distill)
