"""ConvNet-IIG masks: for each label C_i of a feature, the set M_{C_i} of gates that should be open (Sec. III-B).

Gates are numbered 0..k-1 in block order among the gated blocks (figures print them as 1..k, like the paper).
Label sets of one feature must be disjoint, and so must the gate sets of different features: overlapping sets would
ask the same gate to be open and closed at once (the paper's reason for disjointness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from facegraph.errors import ConfigError

MASK_SCHEMES = ("alternate", "blocks", "explicit")


@dataclass(frozen=True)
class FeatureMasks:
    """The masks of one feature: `label_gates[i]` are the gates that label `labels[i]` should open."""

    feature: str
    labels: tuple[str, ...]
    label_gates: tuple[tuple[int, ...], ...]
    num_gates: int

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.label_gates):
            raise ConfigError(f"feature {self.feature!r}: {len(self.labels)} labels but {len(self.label_gates)} masks")
        owner: dict[int, str] = {}
        for label, gates in zip(self.labels, self.label_gates):
            if not gates:
                raise ConfigError(f"feature {self.feature!r}: label {label!r} has an empty mask")
            for gate in gates:
                if not 0 <= gate < self.num_gates:
                    raise ConfigError(
                        f"feature {self.feature!r}: label {label!r} names gate {gate}, outside 0..{self.num_gates - 1}"
                    )
                if gate in owner:
                    raise ConfigError(
                        f"feature {self.feature!r}: labels {owner[gate]!r} and {label!r} overlap on gate {gate}; "
                        "masks of one feature must be disjoint"
                    )
                owner[gate] = label

    @property
    def feature_gates(self) -> list[int]:
        """The gates this feature constrains (the union of its label masks), in order."""
        return sorted(g for gates in self.label_gates for g in gates)

    def matrix(self) -> torch.Tensor:
        """(labels, feature gates) 0/1 float tensor: the indicator 1{G_j in M_{C_i}} over this feature's gates."""
        columns = {gate: column for column, gate in enumerate(self.feature_gates)}
        matrix = torch.zeros(len(self.labels), len(columns))
        for row, gates in enumerate(self.label_gates):
            matrix[row, [columns[g] for g in gates]] = 1.0
        return matrix


def alternate_masks(feature: str, labels: Sequence[str], num_gates: int, gates: Sequence[int] | None = None) -> FeatureMasks:
    """Label i opens every p-th gate starting at the i-th (the paper's gender masks: alternating gated blocks)."""
    gates = list(range(num_gates)) if gates is None else list(gates)
    p = len(labels)
    return FeatureMasks(feature, tuple(labels), tuple(tuple(gates[i::p]) for i in range(p)), num_gates)


def block_masks(feature: str, labels: Sequence[str], num_gates: int, block_size: int, start: int = 0) -> FeatureMasks:
    """Label i opens `block_size` contiguous gates from start + i * block_size (the paper's gender+age model:
    3 + 3 gates for gender, 4 x 4 for age)."""
    if block_size < 1:
        raise ConfigError(f"feature {feature!r}: block_size must be >= 1, got {block_size}")
    label_gates = tuple(tuple(range(start + i * block_size, start + (i + 1) * block_size)) for i in range(len(labels)))
    return FeatureMasks(feature, tuple(labels), label_gates, num_gates)


def explicit_masks(feature: str, labels: Sequence[str], num_gates: int, label_gates: Mapping[str, Sequence[int]]) -> FeatureMasks:
    """Masks listed by hand: `label_gates[label]` = the gates of that label; every label needs one."""
    missing = [label for label in labels if label not in label_gates]
    extra = [label for label in label_gates if label not in labels]
    if missing or extra:
        raise ConfigError(f"feature {feature!r}: explicit masks miss labels {missing} / name unknown labels {extra}")
    return FeatureMasks(feature, tuple(labels), tuple(tuple(int(g) for g in label_gates[l]) for l in labels), num_gates)


def build_feature_masks(
    feature: str,
    labels: Sequence[str],
    num_gates: int,
    scheme: str,
    *,
    block_size: int | None = None,
    start: int = 0,
    gates: Sequence[int] | None = None,
    label_gates: Mapping[str, Sequence[int]] | None = None,
) -> FeatureMasks:
    """Masks of one feature from a scheme name and its parameters (how configs describe them)."""
    if scheme == "alternate":
        return alternate_masks(feature, labels, num_gates, gates)
    if scheme == "blocks":
        if block_size is None:
            raise ConfigError(f"feature {feature!r}: the 'blocks' scheme needs block_size")
        return block_masks(feature, labels, num_gates, block_size, start)
    if scheme == "explicit":
        if label_gates is None:
            raise ConfigError(f"feature {feature!r}: the 'explicit' scheme needs label_gates")
        return explicit_masks(feature, labels, num_gates, label_gates)
    raise ConfigError(f"feature {feature!r}: unknown mask scheme {scheme!r}; choose one of {MASK_SCHEMES}")


def check_disjoint_features(feature_masks: Sequence[FeatureMasks]) -> None:
    """Several features combine only on disjoint gate sets; raise naming the shared gates otherwise."""
    owner: dict[int, str] = {}
    for masks in feature_masks:
        shared = sorted(g for g in masks.feature_gates if g in owner)
        if shared:
            others = sorted({owner[g] for g in shared})
            raise ConfigError(f"features {others} and {masks.feature!r} overlap on gates {shared}; feature gate sets must be disjoint")
        owner.update({g: masks.feature for g in masks.feature_gates})
