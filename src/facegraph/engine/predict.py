"""`facegraph predict`: ask a trained run about photos: identities, the inference graph taken, attributes, cost.

Photos are cut and normalised as the run's dataset was prepared, run in batches with deterministic, skipping gates,
and each is described by its top-5 identities, the gated blocks that ran, the attributes read out from the gates
(eq. 5) with their distances, and the GMACs it cost. An unreadable photo gets an error naming it; the others still
get their prediction.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from facegraph.data.images import load_image_for_inference
from facegraph.engine.trained import TrainedRun, inference_precision
from facegraph.errors import DataError, FacegraphError
from facegraph.graphs import read_out

logger = logging.getLogger(__name__)

TOP_K = 5


@dataclass(frozen=True)
class LabelReference:
    """What eq. 5 compares a photo's gates with for one feature: a row per label over some of the gates."""

    feature: str
    labels: list[str]
    rows: torch.Tensor  # (p, len(gates)): 0/1 IIG masks, or per-label mean gate vectors (prototypes)
    gates: list[int]  # the gate columns (0-based, gate order) the rows refer to
    method: str  # "iig-masks" or "train-prototypes"


@dataclass(frozen=True)
class AttributeEstimate:
    feature: str
    label: str
    distance: float  # eq. 5: squared distance of the photo's gates to the chosen label's row
    distances: dict[str, float]  # to every label's row
    method: str


@dataclass(frozen=True)
class PhotoPrediction:
    image: str
    top5: list[tuple[str, float]]  # identity name, softmax probability; best first
    gates: str  # one 0/1 character per gated block, in gate order
    open_gates: list[int]  # gated blocks that ran, numbered 1..k as in the report's figures
    blocks_run: int  # residual blocks that ran, always-on blocks included
    blocks_total: int
    gmacs: float  # this photo's cost (conv + linear + norm, as `facegraph flops` counts)
    dense_gmacs: float  # the cost with every block running
    attributes: list[AttributeEstimate]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["top5"] = [{"identity": name, "probability": probability} for name, probability in self.top5]
        return data


@dataclass(frozen=True)
class PredictionFailure:
    image: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_references(trained: TrainedRun) -> list[LabelReference]:
    """IIG masks of the features the run was trained with, then train-split prototypes for the other features where
    evaluate stored them (readout.<feature>.prototypes in eval/<split>.json)."""
    num_gates = trained.model.num_gates
    if num_gates == 0:
        return []
    features: dict[str, list[str]] = trained.dataset.get("features", {})
    references = [LabelReference(feature, list(masks.labels), masks.matrix(), masks.feature_gates, "iig-masks")
                  for feature, masks in trained.feature_masks.items()]
    prototypes = trained.run.stored_prototypes(features, num_gates)
    all_gates = list(range(num_gates))
    references += [LabelReference(feature, features[feature], rows.float(), all_gates, "train-prototypes")
                   for feature, rows in prototypes.items() if feature not in trained.feature_masks]
    missing = [feature for feature in features if feature not in {r.feature for r in references}]
    if missing:
        logger.info("no IIG masks or stored train-split prototypes for %s: those attributes are not estimated", ", ".join(missing))
    return references


def estimate_attributes(gate_values: torch.Tensor, references: Sequence[LabelReference]) -> list[list[AttributeEstimate]]:
    """Eq. 5 for every photo (rows of `gate_values`, (B, k)) and every feature: the nearest label and all distances."""
    per_image: list[list[AttributeEstimate]] = [[] for _ in range(gate_values.shape[0])]
    for reference in references:
        chosen, distances = read_out(gate_values[:, reference.gates], reference.rows)
        for row, label in enumerate(chosen.tolist()):
            by_label = {name: float(d) for name, d in zip(reference.labels, distances[row].tolist())}
            per_image[row].append(AttributeEstimate(reference.feature, reference.labels[label],
                                                    by_label[reference.labels[label]], by_label, reference.method))
    return per_image


def _load_batch(paths: Sequence[Path], dataset: dict) -> tuple[list[tuple[int, torch.Tensor]], dict[int, str]]:
    loaded, failures = [], {}
    for position, path in enumerate(paths):
        try:
            loaded.append((position, load_image_for_inference(path, dataset)))
        except DataError as error:
            failures[position] = str(error)
    return loaded, failures


@torch.no_grad()
def predict_images(trained: TrainedRun, images: Sequence[str | Path], *, batch_size: int = 32,
                   center_crop: float | None = None) -> list[PhotoPrediction | PredictionFailure]:
    """One result per photo in input order; photos are loaded and run `batch_size` at a time, cut as the run's dataset
    was prepared or, given `center_crop`, with that centre crop (photos framed unlike the training faces)."""
    if batch_size < 1:
        raise FacegraphError(f"batch size must be >= 1, got {batch_size}")
    cutting = trained.dataset if center_crop is None else {**trained.dataset, "center_crop": center_crop}
    model = trained.inference_model
    names = trained.dataset["identities"]
    references = label_references(trained)
    table = trained.cost_table
    dense_gmacs = table.dense_macs() / 1e9
    gated = set(model.gated_blocks)
    always_run = len(model.blocks) - len(gated)
    device = next(model.parameters()).device
    precision = inference_precision(trained.config, device)
    results: list[PhotoPrediction | PredictionFailure] = []
    for start in range(0, len(images), batch_size):
        paths = [Path(p) for p in images[start:start + batch_size]]
        loaded, failures = _load_batch(paths, cutting)
        predictions: dict[int, PhotoPrediction] = {}
        if loaded:
            batch = torch.stack([tensor for _, tensor in loaded]).to(device)
            logits, gate_values = model.infer(batch, skip=True, precision=precision)
            logits, gate_values = logits.cpu(), gate_values.cpu()
            probabilities, classes = (logits * model.logit_scale).softmax(dim=1).topk(min(TOP_K, logits.shape[1]), dim=1)
            costs = (table.per_image_macs(gate_values) / 1e9).tolist()
            attributes = estimate_attributes(gate_values, references)
            for row, (position, _) in enumerate(loaded):
                gates = [int(g) for g in gate_values[row].tolist()]
                predictions[position] = PhotoPrediction(
                    image=str(paths[position]),
                    top5=[(names[c], float(p)) for c, p in zip(classes[row].tolist(), probabilities[row].tolist())],
                    gates="".join(map(str, gates)),
                    open_gates=[number for number, g in enumerate(gates, start=1) if g],
                    blocks_run=always_run + sum(gates),
                    blocks_total=len(model.blocks),
                    gmacs=costs[row],
                    dense_gmacs=dense_gmacs,
                    attributes=attributes[row],
                )
        for position, path in enumerate(paths):
            results.append(predictions[position] if position in predictions else PredictionFailure(str(path), failures[position]))
        logger.debug("predicted %d of %d photos", min(start + batch_size, len(images)), len(images))
    return results
