"""`facegraph verify`: the verification protocol on pairs of photos with a run's embeddings, written to
RUN/verify/<name>/ (summary.json, pairs.csv, skipped-pairs.txt; docs/run-directory.md).

The protocol itself (folds, thresholds, ROC, TAR at FAR) is recognition.protocol's; the report draws what this
writes (analysis.verification).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegraph.data.prepared import load_prepared
from facegraph.engine.predict import estimate_attributes, label_references
from facegraph.engine.trained import TrainedRun
from facegraph.errors import DataError
from facegraph.recognition.embedding import (check_center_crops, embed_images_at_crops, is_prepared_dataset,
                                             prepared_for_run, run_preprocessing)
from facegraph.recognition.pairs import Pair, read_lfw_pairs, sample_pairs, split_available
from facegraph.recognition.protocol import (TarAtFar, VerificationResult, pair_similarities, tar_at_far,
                                           verification_protocol)
from facegraph.rundir import (SKIPPED_PAIRS_FILE, VERIFIED_PAIRS_FILE, VERIFY_SUMMARY_FILE, write_csv, write_json,
                              write_text)

logger = logging.getLogger(__name__)

FARS = (1e-2, 1e-3)


@dataclass(frozen=True)
class PairSet:
    """Pairs to verify, the folder their paths are relative to, each image's person, and how to cut the images.

    With several `center_crops` the photos are embedded once per crop and each fold is decided with the crop that
    verifies best on the other folds (`verification_protocol`); otherwise `preprocessing`'s own crop is used.
    """

    pairs: list[Pair]
    images_root: Path
    person_of: dict[str, str]  # image path (relative) -> person name
    preprocessing: dict[str, Any]
    source: dict[str, Any]  # how the pairs were made (for the summary)
    name: str  # default output folder name under RUN/verify/
    center_crops: tuple[float, ...] = ()

    def crops(self) -> tuple[float, ...]:
        """The centre crops the photos are embedded at: the candidates, or the one of `preprocessing`."""
        return self.center_crops or (float(self.preprocessing["center_crop"]),)


def lfw_pair_set(trained: TrainedRun, pairs_file: str | Path, images_root: str | Path,
                 center_crop: float | Sequence[float] | None = None) -> PairSet:
    """Pairs of an LFW pairs file over an LFW-layout folder (the person is the image's folder name). `center_crop`
    frames the photos when they are framed unlike the run's training faces (default: the run's own); several values
    are candidates, chosen per fold on the other folds (PairSet)."""
    pairs = read_lfw_pairs(pairs_file)
    images_root = Path(images_root)
    if not images_root.is_dir():
        raise DataError(f"images folder {images_root} does not exist")
    person_of = {path: Path(path).parts[0] for pair in pairs for path in (pair.first, pair.second)}
    preprocessing = run_preprocessing(trained, is_prepared_dataset(images_root))
    crops = () if center_crop is None else check_center_crops(np.atleast_1d(center_crop))
    if crops:
        preprocessing["center_crop"] = crops[0]
    return PairSet(pairs, images_root, person_of, preprocessing,
                   {"kind": "pairs-file", "pairs_file": str(pairs_file), "images": str(images_root)},
                   Path(pairs_file).stem, crops if len(crops) > 1 else ())


def prepared_pair_set(trained: TrainedRun, prepared: str | Path, num_pairs: int, seed: int, split: str = "test",
                      folds: int = 10) -> PairSet:
    """Seeded pairs (`recognition.pairs.sample_pairs`) over one split of a prepared dataset."""
    dataset = load_prepared(prepared)
    dataset = prepared_for_run(trained, dataset)
    indices = dataset.split_indices(split)
    if not indices:
        raise DataError(f"{dataset.root} has no {split!r} split")
    paths = [dataset.samples[i].path for i in indices]
    people = [dataset.identities[dataset.samples[i].identity].name for i in indices]
    pairs = sample_pairs(paths, people, num_pairs, seed, folds)
    return PairSet(pairs, Path(dataset.root), dict(zip(paths, people)), run_preprocessing(trained, prepared=True),
                   {"kind": "prepared", "dataset": str(dataset.root), "split": split, "num_pairs": num_pairs,
                    "seed": seed, "folds": folds},
                   f"{Path(dataset.root).name}-{split}-n{num_pairs}-s{seed}")


def _tar_dict(tar: TarAtFar) -> dict[str, Any]:
    return {"far": tar.far, "tar": tar.tar, "threshold": tar.threshold, "false_accepts": tar.false_accepts,
            "mismatched_pairs": tar.mismatched_pairs, "achieved_far": tar.achieved_far, "resolved": tar.resolved}


def _protocol_dict(protocol: VerificationResult, tars: list[TarAtFar], gmacs: float,
                   crops: tuple[float, ...]) -> dict[str, Any]:
    return {
        "accuracy_mean": protocol.mean_accuracy, "accuracy_std": protocol.std_accuracy,
        "standard_error": protocol.standard_error, "auc": protocol.auc,
        "folds": [int(f) for f in protocol.folds], "fold_accuracies": protocol.fold_accuracies.tolist(),
        "fold_thresholds": protocol.fold_thresholds.tolist(),
        "fold_center_crops": [crops[c] for c in protocol.fold_candidates.tolist()],
        "tar_at_far": [_tar_dict(t) for t in tars], "mean_gmacs_per_image": gmacs,
    }


@dataclass
class VerificationOutcome:
    """verify's result: the summary (as written to summary.json) and where the files went."""

    summary: dict[str, Any]
    out_dir: Path

    @property
    def summary_path(self) -> Path:
        return self.out_dir / VERIFY_SUMMARY_FILE

    @property
    def pairs_path(self) -> Path:
        return self.out_dir / VERIFIED_PAIRS_FILE


def _attribute_labels(trained: TrainedRun, gates: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """Features read out from the gates (eq. 5) and, per image, the chosen label of each."""
    references = label_references(trained)
    if not references or not len(gates):
        return [], [[] for _ in range(len(gates))]
    estimates = estimate_attributes(torch.from_numpy(gates).float(), references)
    return [r.feature for r in references], [[e.label for e in row] for row in estimates]


def cost_of_chosen_crops(fold_candidates: np.ndarray, crop_gmacs: Sequence[float]) -> float:
    """Mean GMACs per image of a verification whose folds each chose a centre crop (`fold_candidates`: per fold, an
    index into `crop_gmacs`, each crop's mean cost over the images): each crop's cost weighted by the share of folds
    decided with it. With one crop, that crop's cost."""
    share = np.bincount(fold_candidates, minlength=len(crop_gmacs)) / len(fold_candidates)
    return float(sum(weight * gmacs for weight, gmacs in zip(share, crop_gmacs)))


def verify_pairs(trained: TrainedRun, pair_set: PairSet, *, out_name: str | None = None, flip: bool = False,
                 batch_size: int = 32) -> VerificationOutcome:
    """The verification protocol on `pair_set` with the run's embeddings; writes RUN/verify/<name>/.

    Pairs with a missing (or unreadable) image are skipped and listed in skipped-pairs.txt; more than half skipped is
    an error. Each distinct image is embedded once. Pairs with a person the run was trained on are counted and warned
    about: their accuracy is not verification of unseen people.
    """
    pairs = pair_set.pairs
    out_dir = trained.run.verification_dir(out_name or pair_set.name)
    kept, missing = split_available(pairs, pair_set.images_root)
    skipped = [(pair, "missing image") for pair in missing]
    if len(missing) * 2 > len(pairs):
        raise DataError(f"{len(missing)} of {len(pairs)} pairs have an image missing under {pair_set.images_root}: "
                        "is it the right images folder?")
    distinct = list(dict.fromkeys(path for pair in kept for path in (pair.first, pair.second)))
    crops = pair_set.crops()
    logger.info("verify: embedding %d distinct images of %d pairs at centre crop %s", len(distinct), len(kept),
                ", ".join(f"{c:g}" for c in crops))
    embedded_at = embed_images_at_crops(trained, [pair_set.images_root / p for p in distinct], crops,
                                        preprocessing=pair_set.preprocessing, batch_size=batch_size, flip=flip,
                                        names=distinct)
    embedded = embedded_at[0]
    row_of = embedded.index()
    unreadable = {name for name, _ in embedded.failures}
    if unreadable:
        skipped += [(pair, "unreadable image") for pair in kept if pair.first in unreadable or pair.second in unreadable]
        kept = [pair for pair in kept if pair.first not in unreadable and pair.second not in unreadable]
    if len(skipped) * 2 > len(pairs):
        raise DataError(f"{len(skipped)} of {len(pairs)} pairs have an image missing or unreadable under "
                        f"{pair_set.images_root}")
    if not kept:
        raise DataError("no pair left to verify")
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped_path = out_dir / SKIPPED_PAIRS_FILE
    write_text(skipped_path, "".join(f"{pair.fold}\t{pair.first}\t{pair.second}\t{'same' if pair.same else 'different'}"
                                     f"\t{why}\n" for pair, why in skipped))
    if skipped:
        logger.warning("verify: %d of %d pairs skipped (an image missing or unreadable), listed in %s",
                       len(skipped), len(pairs), skipped_path)

    first = np.array([row_of[p.first] for p in kept])
    second = np.array([row_of[p.second] for p in kept])
    same = np.array([p.same for p in kept])
    folds = np.array([p.fold for p in kept])
    training = set(trained.dataset.get("identities", []))
    overlap = np.array([pair_set.person_of.get(p.first) in training or pair_set.person_of.get(p.second) in training
                        for p in kept])
    if overlap.any():
        logger.warning("verify: %d of %d pairs show a person of the run's training identities: a model is not "
                       "verified on its own training people; use pairs of disjoint identities for an honest number",
                       int(overlap.sum()), len(kept))

    used_rows = np.unique(np.concatenate([first, second]))
    results: dict[str, Any] = {}
    scores_of: dict[str, np.ndarray] = {}
    thresholds_of: dict[str, np.ndarray] = {}
    crop_index_of: dict[str, np.ndarray] = {}  # per pair, the crop its fold was decided with
    variants = [("plain", "embeddings", "gmacs")] + ([("flip", "flip_embeddings", "flip_gmacs")] if flip else [])
    for variant, embeddings_field, gmacs_field in variants:
        candidate_scores = np.stack([pair_similarities(getattr(e, embeddings_field), first, second)
                                     for e in embedded_at])  # (crops, pairs)
        protocol = verification_protocol(candidate_scores, same, folds)
        tars = [tar_at_far(protocol.scores, same, far) for far in FARS]
        gmacs = cost_of_chosen_crops(protocol.fold_candidates,
                                     [float(getattr(e, gmacs_field)[used_rows].mean()) for e in embedded_at])
        results[variant] = _protocol_dict(protocol, tars, gmacs, crops)
        if len(crops) > 1:  # each crop's own view-2 result, for reading; the headline chose per fold
            results[variant]["accuracy_at_each_center_crop"] = {
                f"{crop:g}": verification_protocol(row, same, folds).mean_accuracy
                for crop, row in zip(crops, candidate_scores)}
        fold_position = {f: i for i, f in enumerate(protocol.folds.tolist())}
        positions = np.array([fold_position[f] for f in folds.tolist()])
        scores_of[variant] = protocol.scores
        thresholds_of[variant] = protocol.fold_thresholds[positions]
        crop_index_of[variant] = protocol.fold_candidates[positions]

    labels_at = [_attribute_labels(trained, e.gates) for e in embedded_at]
    features = labels_at[0][0]
    header = ["fold", "first", "second", "person_first", "person_second", "same", "training_identity",
              "center_crop", "similarity", "threshold", "correct"]
    if flip:
        header += ["center_crop_flip", "similarity_flip", "threshold_flip", "correct_flip"]
    header += ["gmacs_first", "gmacs_second", "active_gates_first", "active_gates_second", "gates_first", "gates_second"]
    header += [f"{feature}_{side}" for feature in features for side in ("first", "second")]
    rows = []
    for index, pair in enumerate(kept):
        a, b = first[index], second[index]
        row: list[Any] = [pair.fold, pair.first, pair.second, pair_set.person_of.get(pair.first, ""),
                          pair_set.person_of.get(pair.second, ""), int(pair.same), int(overlap[index])]
        for variant, _, _ in variants:
            score, threshold = scores_of[variant][index], thresholds_of[variant][index]
            row += [f"{crops[crop_index_of[variant][index]]:g}", f"{score:.6f}", f"{threshold:.6f}",
                    int((score >= threshold) == pair.same)]
        # Gates, costs and read-outs of the images as cut for the plain embedding's decision.
        at = embedded_at[crop_index_of["plain"][index]]
        labels = labels_at[crop_index_of["plain"][index]][1]
        row += [f"{at.gmacs[a]:.6f}", f"{at.gmacs[b]:.6f}", int(at.gates[a].sum()), int(at.gates[b].sum()),
                "".join(str(int(g)) for g in at.gates[a]), "".join(str(int(g)) for g in at.gates[b])]
        for position in range(len(features)):
            row += [labels[a][position], labels[b][position]]
        rows.append(row)
    write_csv(out_dir / VERIFIED_PAIRS_FILE, header, rows)

    summary = {
        "run": str(trained.path), "checkpoint": trained.checkpoint, "layout": trained.layout,
        "source": pair_set.source, "flip": flip,
        "preprocessing": pair_set.preprocessing, "center_crops": list(crops),
        "pairs_total": len(pairs), "pairs_used": len(kept), "pairs_matched": int(same.sum()),
        "pairs_mismatched": int((~same).sum()), "pairs_skipped_missing": len(missing),
        "pairs_skipped_unreadable": len(skipped) - len(missing), "skipped_pairs_file": str(skipped_path),
        "training_identity_pairs": int(overlap.sum()), "images_embedded": len(embedded.names),
        "num_gates": int(trained.model.num_gates), "dense_gmacs": embedded.dense_gmacs,
        "mean_gmacs_per_image": results["plain"]["mean_gmacs_per_image"], "results": results,
    }
    write_json(out_dir / VERIFY_SUMMARY_FILE, summary)
    logger.info("verify: wrote %s and %s", out_dir / VERIFY_SUMMARY_FILE, out_dir / VERIFIED_PAIRS_FILE)
    return VerificationOutcome(summary, out_dir)
