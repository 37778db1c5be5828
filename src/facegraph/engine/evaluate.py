"""Honest evaluation: deterministic gates, real skipping, per-image cost, attribute read-out (eq. 5).

Writes eval/<split>.json and eval/<split>-images.csv in the run directory (docs/run-directory.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from facegraph import paper
from facegraph.data import UNKNOWN, Batch, PreparedDataset, load_prepared, make_loader
from facegraph.engine.layout import use_layout
from facegraph.engine.metrics import topk_correct
from facegraph.engine.trained import TrainedRun, inference_precision, load_trained
from facegraph.errors import DataError, FacegraphError
from facegraph.flops import CONV_ONLY, CostTable
from facegraph.graphs import label_prototypes, read_out
from facegraph.models import DEFAULT_LAYOUT, GatedResNet
from facegraph.rundir import (BEST, OTHER_PHOTOS, PREPARED_AGAIN, dataset_difference, dataset_fingerprint,
                              image_records_header, preparation_fingerprint, prototypes_as_json, write_csv)

logger = logging.getLogger(__name__)

PROTOTYPE_METHOD = ("train-prototypes: each label's mean gate vector over the training split (deterministic gates), "
                    "nearest by squared distance as in eq. 5")
MASK_METHOD = "iig-masks: the label masks the model was trained with, nearest by squared distance (eq. 5)"


@dataclass
class SplitOutputs:
    """Per-image results of deterministic inference over one split, in loader order."""

    indices: torch.Tensor  # (N,) sample indices in the prepared dataset
    identities: torch.Tensor  # (N,)
    top5: torch.Tensor  # (N, min(5, classes)) class ids, best first
    confidence: torch.Tensor  # (N,) softmax probability of the top-1 class
    gate_values: torch.Tensor  # (N, k)
    top1_correct: torch.Tensor  # (N,) bool
    top5_correct: torch.Tensor  # (N,) bool


@torch.no_grad()
def predict_split(model: GatedResNet, loader: Iterable[Batch], precision: str = "fp32", device: torch.device | str = "cpu",
                  description: str | None = None) -> SplitOutputs:
    """Run deterministic, skipping inference over every batch of `loader`."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in SplitOutputs.__dataclass_fields__}
    for batch in tqdm(loader, desc=description, leave=False, disable=True if description is None else None, unit="batch"):
        logits, gate_values = model.infer(batch.images.to(device), skip=True, precision=precision)
        logits, gate_values, identities = logits.cpu(), gate_values.cpu(), batch.identities
        hits = topk_correct(logits, identities)
        probabilities = (logits * model.logit_scale).softmax(dim=1)  # a cosine classifier gives cosines
        parts["indices"].append(batch.indices)
        parts["identities"].append(identities)
        parts["top5"].append(logits.topk(min(5, logits.shape[1]), dim=1).indices)
        parts["confidence"].append(probabilities.max(dim=1).values)
        parts["gate_values"].append(gate_values)
        parts["top1_correct"].append(hits[1])
        parts["top5_correct"].append(hits[5])
    return SplitOutputs(**{name: torch.cat(values) for name, values in parts.items()})


def summarize_predictions(predictions: SplitOutputs, table: CostTable) -> dict:
    """Accuracy, per-image cost (mean +- std) and open rate per gated block."""
    per_image = table.per_image_macs(predictions.gate_values) / 1e9
    per_image_conv = table.per_image_macs(predictions.gate_values, CONV_ONLY) / 1e9
    # Over the images of the split: the population standard deviation describes them, it estimates nothing.
    mean, std = float(per_image.double().mean()), float(per_image.double().std(unbiased=False))
    conv_mean, conv_std = float(per_image_conv.double().mean()), float(per_image_conv.double().std(unbiased=False))
    return {
        "images": len(predictions.indices),
        "top1": float(predictions.top1_correct.float().mean()),
        "top5": float(predictions.top5_correct.float().mean()),
        "gmacs": {"mean": mean, "std": std, "dense": table.dense_macs() / 1e9, "counted": "conv+linear+norm"},
        "gflops": {"mean": 2 * mean, "std": 2 * std},
        "gmacs_conv_only": {"mean": conv_mean, "std": conv_std},
        "gate_rates": predictions.gate_values.mean(dim=0).tolist() if len(predictions.indices) else [],
    }


def readout_report(label_masks: torch.Tensor, gate_values: torch.Tensor, label_codes: torch.Tensor,
                   labels: list[str], method: str) -> tuple[dict, torch.Tensor]:
    """Eq. 5 accuracy and confusion matrix over the images with a known label; returns it and the per-image
    read-out (label index for every image, known or not)."""
    predicted, _ = read_out(gate_values, label_masks)
    known = label_codes >= 0
    confusion = torch.zeros(len(labels), len(labels), dtype=torch.long)
    confusion.index_put_((label_codes[known], predicted[known]), torch.ones(int(known.sum()), dtype=torch.long),
                         accumulate=True)
    accuracy = float((predicted[known] == label_codes[known]).float().mean()) if bool(known.any()) else None
    return ({"method": method, "labels": labels, "images": int(known.sum()), "accuracy": accuracy,
             "confusion": confusion.tolist()}, predicted)


def _measure_speedup(model: GatedResNet, unfused: GatedResNet, images: torch.Tensor, table: CostTable,
                     precision: str) -> dict:
    """Wall time of the fused graph run dense (masked: every block computed, closed ones multiplied by 0, as
    ConvNet-AIG's code runs) against the same graph skipping, what the MACs predict, and the unfused dense time."""
    def timed(network: GatedResNet, skip: bool) -> float:
        network.infer(images, skip=skip, precision=precision)  # warm-up
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            network.infer(images, skip=skip, precision=precision)
            best = min(best, time.perf_counter() - started)
        return best

    dense_s, skip_s, unfused_s = timed(model, False), timed(model, True), timed(unfused, False)
    gate_values = model.infer(images, skip=True, precision=precision).gate_values
    predicted = table.dense_macs() / float(table.per_image_macs(gate_values).mean())
    return {"images": len(images), "dense_s": dense_s, "skip_s": skip_s, "unfused_dense_s": unfused_s,
            "measured": dense_s / skip_s, "predicted": predicted, "fused_over_unfused": unfused_s / dense_s}


def dataset_of_run(trained: TrainedRun, data_root: str | Path | None = None) -> PreparedDataset:
    """The prepared dataset a run was trained on, in the run's splits (`paper.run_dataset`): `data_root` when given
    (a moved dataset), else the path stored in dataset.json; either way its fingerprint must match the one stored
    there."""
    if data_root is None and "root" not in trained.dataset:
        raise DataError(f"{trained.path} records no dataset location (an export keeps no local paths): pass --data "
                        f"with the prepared dataset it was trained on")
    root = Path(data_root) if data_root is not None else Path(trained.dataset["root"])
    if data_root is None and not root.exists():
        raise DataError(f"the dataset of {trained.path} was at {root}, which no longer exists; pass --data with its "
                        f"new location")
    dataset = load_prepared(root)
    if trained.dataset.get("fingerprint") is not None:  # an export records none: it evaluates on any dataset
        difference = dataset_difference(trained.dataset, dataset_fingerprint(Path(dataset.root)),
                                        preparation_fingerprint(dataset.info))
        if difference == OTHER_PHOTOS:
            raise DataError(f"{root} is not the dataset {trained.path} was trained on (manifest/identities "
                            f"fingerprint differs from {trained.run.dataset_path})")
        if difference == PREPARED_AGAIN:
            raise DataError(f"{root} was prepared again since {trained.path} was trained (image size, crop or "
                            f"normalisation differ from what {trained.run.dataset_path} records)")
    return paper.run_dataset(trained.config, dataset)


def evaluate_run(run_dir: str | Path, split: str = "test", *, dataset: PreparedDataset | None = None,
                 data_root: str | Path | None = None, checkpoint: str = BEST, timing: bool = True,
                 warn_unfinished: bool = True, layout: str = DEFAULT_LAYOUT) -> dict:
    """Evaluate a run's checkpoint on one split with its fused graph laid out as `layout` (engine.layout; "auto" is
    timed at the batch evaluation runs); write eval/<split>.json and eval/<split>-images.csv.
    `warn_unfinished=False`: the caller is the training itself, which evaluates before writing done.json."""
    trained = load_trained(run_dir, checkpoint, warn_unfinished=warn_unfinished)
    dataset = dataset or dataset_of_run(trained, data_root)
    if split not in dataset.splits:
        raise FacegraphError(f"{dataset.root} has no {split!r} split (it has: {', '.join(dataset.splits)})")
    batch = max(1, min(trained.config.train.eval_batch_size, len(dataset.split_indices(split))))
    trained, layout_timing = use_layout(trained, layout, batch_size=batch)
    model, config = trained.inference_model, trained.config
    precision = inference_precision(config, torch.device("cpu"))

    def loader(name: str):
        return make_loader(dataset, name, config.train.eval_batch_size, train=False, seed=config.train.seed)

    predictions = predict_split(model, loader(split), precision, description=f"evaluate {split}")
    summary = {"split": split, "checkpoint": checkpoint, "layout": trained.layout,
               **summarize_predictions(predictions, trained.cost_table), "gated_blocks": list(model.gated_blocks)}
    if layout_timing is not None:
        summary["layout_seconds_per_batch"] = {"batch_size": layout_timing.batch_size, **layout_timing.seconds}
    readouts, readout_labels = {}, {}
    if model.num_gates:
        train_gates = None
        for feature, labels in dataset.features.items():
            codes = dataset.attribute_codes(feature)[predictions.indices]
            if feature in trained.feature_masks:
                masks = trained.feature_masks[feature]
                report, predicted = readout_report(masks.matrix(), predictions.gate_values[:, masks.feature_gates],
                                                   codes, labels, MASK_METHOD)
            else:
                if train_gates is None:
                    train_gates = predict_split(model, loader("train"), precision, description="gates on train")
                train_codes = dataset.attribute_codes(feature)[train_gates.indices]
                if not bool((train_codes >= 0).any()):
                    continue  # no training image carries this feature: nothing to read out
                prototypes = label_prototypes(train_gates.gate_values, train_codes, len(labels))
                report, predicted = readout_report(prototypes, predictions.gate_values, codes, labels,
                                                   PROTOTYPE_METHOD)
                # Kept for predict; a label without training images has no prototype (null).
                report["prototypes"] = prototypes_as_json(prototypes)
            readouts[feature], readout_labels[feature] = report, predicted
    summary["readout"] = readouts
    if timing:
        summary["speedup"] = _measure_speedup(model, trained.model, _first_images(loader(split), 256),
                                              trained.cost_table, precision)
    trained.run.write_evaluation(split, summary)
    _write_images_csv(trained, split, dataset, predictions, readout_labels)
    logger.info("%s %s: top-1 %.2f%%, %.4f GMACs per image", run_dir, split, 100 * summary["top1"],
                summary["gmacs"]["mean"])
    return summary


def _first_images(loader, count: int) -> torch.Tensor:
    images = []
    for batch in loader:
        images.append(batch.images)
        if sum(len(i) for i in images) >= count:
            break
    return torch.cat(images)[:count]


def _write_images_csv(trained: TrainedRun, split: str, dataset: PreparedDataset, predictions: SplitOutputs,
                      readout_labels: dict[str, torch.Tensor]) -> None:
    features = list(dataset.features)
    per_image = (trained.cost_table.per_image_macs(predictions.gate_values) / 1e9).tolist()
    rows = []
    for row, sample_index in enumerate(predictions.indices.tolist()):
        sample = dataset.samples[sample_index]
        identity = dataset.identities[sample.identity]
        gates = predictions.gate_values[row]
        rows.append([
            sample_index, sample.path, sample.identity, identity.name, int(predictions.top5[row, 0]),
            int(predictions.top1_correct[row]), int(predictions.top5_correct[row]),
            f"{float(predictions.confidence[row]):.4f}", f"{per_image[row]:.5f}", int(gates.sum()),
            "".join(str(int(g)) for g in gates.tolist()),
            *(identity.attributes.get(f, UNKNOWN) for f in features),
            *(dataset.features[f][int(labels[row])] for f, labels in readout_labels.items()),
        ])
    header = image_records_header(features, list(readout_labels))
    write_csv(trained.run.image_records_path(split), header, rows)
