"""The paper's run from a config: which blocks carry gates and their target rates, the model, the IIG masks, the
loss weights of each variant, and the model's name as Table II writes it.

Training, evaluation, `facegraph flops`, the report and the benchmarks all ask this module, so a preset means the same
network everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from facegraph.config import RunConfig
from facegraph.data import PreparedDataset
from facegraph.errors import ConfigError
from facegraph.graphs import FeatureMasks, build_feature_masks, check_disjoint_features, middle_blocks, target_rate_schedule
from facegraph.models import GatedResNet, build_model, num_blocks, stage_first_blocks


def gated_blocks(config: RunConfig) -> list[int]:
    """The residual blocks that carry a gate: none for a ResNet; for ConvNet-AIG/IIG the middle blocks ([gates]
    always_on_first / always_on_last), without each stage's strided first block unless `gates.downsampling`."""
    if config.model.variant == "resnet":
        return []
    blocks = middle_blocks(num_blocks(config.model.arch), config.gates.always_on_first, config.gates.always_on_last)
    if not config.gates.downsampling:
        # Closed, such a block shrinks to its strided 1x1 projection (on LFW at CPU scale: 5 points of top-1 for 2 %
        # of the MACs), so it stays on.
        strided = set(stage_first_blocks(config.model.arch)[1:])
        blocks = [block for block in blocks if block not in strided]
    return blocks


def target_rates(config: RunConfig) -> list[float] | None:
    """The per-block schedule the model is built from: None (no gates) for a ResNet."""
    gated = gated_blocks(config)
    if not gated:
        return None
    return target_rate_schedule(num_blocks(config.model.arch), gated, config.loss.target_rate)


def model_from_config(config: RunConfig, num_classes: int) -> GatedResNet:
    """The network a config trains; a margin loss gets a cosine classifier whose logit scale is the margin's s."""
    model, margin = config.model, config.loss.margin != "none"
    return build_model(model.arch, num_classes, width=model.width, target_rates=target_rates(config),
                       gate_hidden=model.gate_hidden, initial_open_rate=model.initial_open_rate,
                       temperature=config.gumbel.temperature, classifier="cosine" if margin else "linear",
                       logit_scale=config.loss.margin_scale if margin else None)


def image_size(config: RunConfig, dataset_image_size: int) -> int:
    """The input size: the prepared dataset's, unless the config names one (then they must agree)."""
    wanted = config.model.image_size
    if wanted and wanted != dataset_image_size:
        raise ConfigError(f"model.image_size is {wanted} but the dataset holds {dataset_image_size} px images; prepare "
                          f"it at that size or drop model.image_size (0 takes the dataset's)")
    return dataset_image_size


def run_dataset(config: RunConfig, dataset: PreparedDataset) -> PreparedDataset:
    """The splits a run trains, validates and tests on: the prepared ones, or cross-validation fold `data.fold` of
    `data.folds` (dealt by `data.fold_seed`); without a `data.val_split` split, that split is carved from train
    (`data.val_from_train`)."""
    if config.data.folds:
        dataset = dataset.cross_validation_fold(config.data.folds, config.data.fold, config.data.fold_seed)
    if config.data.val_split not in dataset.splits and config.data.val_from_train > 0:
        dataset = dataset.with_validation_from_train(config.data.val_from_train, config.train.seed,
                                                     config.data.val_split)
    return dataset


def iig_masks(config: RunConfig, num_gates: int, features: dict[str, list[str]]) -> list[FeatureMasks]:
    """The IIG masks of the configured features, validated (disjoint within and across features)."""
    masks = []
    for feature in config.loss.iig_features:
        if feature.name not in features:
            raise ConfigError(f"loss.iig_features: the dataset has no feature {feature.name!r} "
                              f"(it has: {', '.join(features) or 'none'})")
        masks.append(build_feature_masks(
            feature.name, features[feature.name], num_gates, feature.scheme, block_size=feature.block_size,
            start=feature.start, gates=feature.gates, label_gates=feature.label_gates,
        ))
    check_disjoint_features(masks)
    return masks


@dataclass(frozen=True)
class LossWeights:
    """The terms of eq. 3 (generalised) that a variant trains with; the keyword arguments of training_loss."""

    target_weight: float
    iig_weight: float
    iig_balanced: bool
    target_gates: list[int] | None  # gates the target loss covers; None: all
    margin: str | None = None  # "arcface" / "cosface" on cosine logits; None: plain cross-entropy
    margin_m: float = 0.0
    margin_scale: float = 1.0
    distill_weight: float = 0.0  # > 0: distil from the warm-start run's logits (the trainer loads that teacher)
    distill_temperature: float = 1.0


def loss_weights(config: RunConfig, masks: list[FeatureMasks], num_gates: int) -> LossWeights:
    """ResNet: cross-entropy only (or a margin softmax, `loss.margin`, for any variant). ConvNet-AIG: + target loss on
    every gate (eq. 3). ConvNet-IIG: + IIG loss (eq. 4); the target loss on every gate if `loss.target_weight` > 0,
    else (the paper's IIG) only on the gates no mask covers, weighted by `loss.unmasked_target_weight`, so that no gate
    trains under no loss at all. Any variant may add distillation from its warm-start run (`loss.distill_weight`)."""
    loss = config.loss
    # The terms every variant may add: a margin softmax, distillation.
    shared = {} if loss.margin == "none" else {"margin": loss.margin, "margin_m": loss.margin_m,
                                               "margin_scale": loss.margin_scale}
    if loss.distill_weight:
        shared.update(distill_weight=loss.distill_weight, distill_temperature=loss.distill_temperature)
    if config.model.variant == "resnet":
        return LossWeights(0.0, 0.0, False, None, **shared)
    if config.model.variant == "aig":
        return LossWeights(loss.target_weight, 0.0, False, None, **shared)
    if loss.target_weight > 0:
        return LossWeights(loss.target_weight, loss.iig_weight, loss.iig_balanced, None, **shared)
    masked = {gate for m in masks for gate in m.feature_gates}
    unmasked = [gate for gate in range(num_gates) if gate not in masked]
    return LossWeights(loss.unmasked_target_weight if unmasked else 0.0, loss.iig_weight, loss.iig_balanced, unmasked,
                       **shared)


def model_label(config: RunConfig, with_backbone: bool = False) -> str:
    """The row name as the paper writes it (ConvNet-AIG [t=0.4], ConvNet-IIG (Gender + Age), ...); `with_backbone`
    appends the ResNet for gated models (the report, where runs of several backbones may meet)."""
    backbone = config.model.arch.replace("resnet", "ResNet-")
    if config.model.width != 1.0:
        backbone += f" (width {config.model.width:g})"
    if config.model.variant == "resnet":
        return backbone
    if config.model.variant == "aig":
        label = f"ConvNet-AIG [t={config.loss.target_rate:g}]"
    else:
        features = " + ".join(f.name.replace("_", " ").capitalize() for f in config.loss.iig_features)
        label = f"ConvNet-IIG ({features})"
    return f"{label} {backbone}" if with_backbone else label
