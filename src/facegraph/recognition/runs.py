"""Recognition with a trained run: embeddings of photos, the verification protocol on pairs, galleries and open-set
search.

Preprocessing comes from the run. A user's photo (an LFW folder, a gallery folder) is cut, resized and normalised as
the run's dataset was prepared (`dataset.json`: image size, centre crop, mean, std). An image of a *prepared* dataset
is already a cut face: it is only resized to the run's image size and normalised (centre crop 1).

Embeddings are the L2-normalised pooled features before the classifier (`GatedResNet.embed`), computed with
deterministic, skipping gates; each image's cost is the run's cost table at its own gate vector. Flip test-time
augmentation embeds the image and its mirror image and renormalises their sum.
"""

from __future__ import annotations

import csv
import filecmp
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegraph.data.images import inference_params, load_faces_for_inference
from facegraph.data.prepared import PREPARE_FILE, PreparedDataset, load_prepared
from facegraph.engine.predict import estimate_attributes, label_references
from facegraph.engine.trained import TrainedRun, inference_precision
from facegraph.errors import ConfigError, DataError, FacegraphError
from facegraph.models import DEFAULT_LAYOUT
from facegraph.recognition.gallery import (Gallery, SearchResult, calibrate_threshold, false_alarm_bound,
                                          gallery_fingerprint)
from facegraph.recognition.pairs import Pair, read_lfw_pairs, sample_pairs, split_available
from facegraph.recognition.protocol import (TarAtFar, VerificationResult, pair_similarities, tar_at_far,
                                           verification_protocol)
from facegraph import paper
from facegraph.rundir import atomic_write_bytes, dataset_fingerprint, write_json, write_text

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp"})
VERIFY_DIR = "verify"
GALLERIES_DIR = "galleries"
SUMMARY_FILE = "summary.json"
PAIRS_FILE = "pairs.csv"
SKIPPED_FILE = "skipped-pairs.txt"
FARS = (1e-2, 1e-3)
MAX_IMPOSTOR_SCORES = 2_000_000  # a larger gallery's impostor pairs are subsampled (seeded) for calibration


# ------------------------------------------------------------------------------------------------------- embeddings

@dataclass
class EmbeddedImages:
    """Embeddings of the images that could be read, in input order, and the ones that could not.

    `embeddings` (N, D) float32 unit rows; `gates` (N, k) 0/1; `gmacs` (N,) each image's cost. With flip TTA,
    `flip_embeddings` holds the renormalised sum of image and mirror embeddings and `flip_gmacs` the cost of both
    passes.
    """

    names: list[str]
    embeddings: np.ndarray
    gates: np.ndarray
    gmacs: np.ndarray
    dense_gmacs: float
    failures: list[tuple[str, str]] = field(default_factory=list)  # (image, error)
    flip_embeddings: np.ndarray | None = None
    flip_gmacs: np.ndarray | None = None

    def index(self) -> dict[str, int]:
        """Image name -> row."""
        return {name: row for row, name in enumerate(self.names)}

    def save(self, path: str | Path) -> Path:
        """Write names, embeddings, gates and gmacs (and the flip arrays when present) as one .npz file."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"names": np.array(self.names, dtype=str), "embeddings": self.embeddings,
                                         "gates": self.gates, "gmacs": self.gmacs,
                                         "dense_gmacs": np.array(self.dense_gmacs)}
        if self.flip_embeddings is not None and self.flip_gmacs is not None:
            arrays.update(flip_embeddings=self.flip_embeddings, flip_gmacs=self.flip_gmacs)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                np.savez(handle, **arrays)
        except OSError as error:
            raise DataError(f"cannot write {path}: {error.strerror or error}") from None
        return path


def run_preprocessing(trained: TrainedRun, prepared: bool, center_crop: float | None = None) -> dict[str, Any]:
    """How to cut images for the run: its dataset.json for photos, or `center_crop` (checked) for photos framed
    unlike its training faces; without the centre crop for prepared faces."""
    preprocessing = {key: trained.dataset[key] for key in ("image_size", "center_crop", "mean", "std")}
    if prepared:
        preprocessing["center_crop"] = 1.0
    elif center_crop is not None:
        preprocessing["center_crop"] = check_center_crops([center_crop])[0]
    return preprocessing


def is_prepared_dataset(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / PREPARE_FILE).is_file()


def _check_prepared_for_run(trained: TrainedRun, dataset: PreparedDataset) -> PreparedDataset:
    """`dataset`, warned about when its faces are framed unlike the run's; the run's own dataset comes back in the
    run's splits (its cross-validation fold), any other as prepared."""
    if abs(dataset.center_crop - float(trained.dataset.get("center_crop", 1.0))) > 1e-9:
        logger.warning("%s was prepared with centre crop %g, the run's dataset with %g: faces are framed differently",
                       dataset.root, dataset.center_crop, trained.dataset.get("center_crop", 1.0))
    if trained.config.data.folds and dataset_fingerprint(Path(dataset.root)) == trained.dataset.get("fingerprint"):
        return paper.run_dataset(trained.config, dataset)
    return dataset


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder` (by extension), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def resolve_images(trained: TrainedRun, sources: Sequence[str | Path], split: str | None = None) -> tuple[list[Path], dict[str, Any]]:
    """Image paths and their preprocessing from the command line's IMAGES_OR_PREPARED.

    One prepared dataset: its samples (of `split` if given); one folder: every image file under it; otherwise the
    files themselves (a missing or unreadable one is reported by `embed_images`).
    """
    if not sources:
        raise FacegraphError("give at least one image, image folder or prepared dataset")
    if len(sources) == 1 and is_prepared_dataset(sources[0]):
        dataset = load_prepared(sources[0])
        dataset = _check_prepared_for_run(trained, dataset)
        indices = dataset.split_indices(split) if split else range(len(dataset.samples))
        paths = [Path(dataset.root) / dataset.samples[i].path for i in indices]
        if not paths:
            raise DataError(f"{dataset.root} has no images in split {split!r}")
        return paths, run_preprocessing(trained, prepared=True)
    if split:
        raise ConfigError("--split applies to a prepared dataset only")
    if len(sources) == 1 and Path(sources[0]).is_dir():
        paths = image_files(Path(sources[0]))
        if not paths:
            raise DataError(f"{sources[0]}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under it")
        return paths, run_preprocessing(trained, prepared=False)
    return [Path(s) for s in sources], run_preprocessing(trained, prepared=False)


def embed_images(trained: TrainedRun, images: Sequence[str | Path], *, preprocessing: dict[str, Any] | None = None,
                 batch_size: int = 32, flip: bool = False, names: Sequence[str] | None = None) -> EmbeddedImages:
    """Embed every readable image, `batch_size` at a time; unreadable ones are listed in `failures` (and logged).

    `names` (default: the paths as strings) label the rows; `preprocessing` defaults to the run's for photos.
    """
    preprocessing = preprocessing or run_preprocessing(trained, prepared=False)
    return embed_images_at_crops(trained, images, [inference_params(preprocessing).center_crop],
                                 preprocessing=preprocessing, batch_size=batch_size, flip=flip, names=names)[0]


@torch.no_grad()
def embed_images_at_crops(trained: TrainedRun, images: Sequence[str | Path], center_crops: Sequence[float], *,
                          preprocessing: dict[str, Any] | None = None, batch_size: int = 32, flip: bool = False,
                          names: Sequence[str] | None = None) -> list[EmbeddedImages]:
    """`embed_images` at each centre crop, in `center_crops` order: each photo is read once and decoded once per
    JPEG scale the crops need, and an unreadable one is a failure at every crop."""
    if batch_size < 1:
        raise FacegraphError(f"batch size must be >= 1, got {batch_size}")
    names = [str(p) for p in images] if names is None else list(names)
    if len(names) != len(images):
        raise FacegraphError(f"{len(images)} images but {len(names)} names")
    preprocessing = preprocessing or run_preprocessing(trained, prepared=False)
    model = trained.inference_model
    device = next(model.parameters()).device
    precision = inference_precision(trained.config, device)
    kept, failures = [], []
    outputs = [_CropOutputs() for _ in center_crops]
    started = time.monotonic()
    for start in range(0, len(images), batch_size):
        faces_at_crops = []
        for name, path in zip(names[start:start + batch_size], images[start:start + batch_size]):
            try:
                faces_at_crops.append(load_faces_for_inference(path, preprocessing, center_crops))
                kept.append(name)
            except DataError as error:
                failures.append((name, str(error)))
                logger.debug("skipped: %s", error)
        if not faces_at_crops:
            continue
        for crop_index, crop_outputs in enumerate(outputs):
            batch = torch.stack([faces[crop_index] for faces in faces_at_crops]).to(device)
            out = model.embed(batch, skip=True, precision=precision)
            crop_outputs.embeddings.append(out.embeddings.cpu())
            crop_outputs.gates.append(out.gate_values.cpu())
            if flip:
                mirrored = model.embed(batch.flip(-1), skip=True, precision=precision)
                crop_outputs.flipped.append(
                    torch.nn.functional.normalize(out.embeddings + mirrored.embeddings, dim=1).cpu())
                crop_outputs.flipped_gates.append(mirrored.gate_values.cpu())
        logger.debug("embedded %d of %d images", min(start + batch_size, len(images)), len(images))
    logger.debug("embedded %d images at %d crops in %.1f s", len(kept), len(center_crops), time.monotonic() - started)
    return [crop_outputs.embedded(kept, failures, trained, flip) for crop_outputs in outputs]


@dataclass
class _CropOutputs:
    """What `embed_images_at_crops` collects for one crop, batch by batch."""

    embeddings: list[torch.Tensor] = field(default_factory=list)
    gates: list[torch.Tensor] = field(default_factory=list)
    flipped: list[torch.Tensor] = field(default_factory=list)
    flipped_gates: list[torch.Tensor] = field(default_factory=list)

    def embedded(self, kept: list[str], failures: list[tuple[str, str]], trained: TrainedRun,
                 flip: bool) -> EmbeddedImages:
        table, num_gates = trained.cost_table, trained.model.num_gates
        dim = self.embeddings[0].shape[1] if self.embeddings else 0
        gate_matrix = torch.cat(self.gates) if self.gates else torch.zeros(0, num_gates)
        gmacs = (table.per_image_macs(gate_matrix) / 1e9).numpy() if len(gate_matrix) else np.zeros(0)
        result = EmbeddedImages(
            names=list(kept),
            embeddings=(torch.cat(self.embeddings).numpy().astype(np.float32) if self.embeddings
                        else np.zeros((0, dim), np.float32)),
            gates=gate_matrix.numpy().astype(np.float32),
            gmacs=np.asarray(gmacs, dtype=np.float64),
            dense_gmacs=table.dense_macs() / 1e9,
            failures=list(failures),
        )
        if flip:
            result.flip_embeddings = (torch.cat(self.flipped).numpy().astype(np.float32) if self.flipped
                                      else np.zeros((0, dim), np.float32))
            mirror_gates = torch.cat(self.flipped_gates) if self.flipped_gates else torch.zeros(0, num_gates)
            result.flip_gmacs = result.gmacs + ((table.per_image_macs(mirror_gates) / 1e9).numpy()
                                                if len(mirror_gates) else 0.0)
        return result


# ----------------------------------------------------------------------------------------------------- verification

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


def check_center_crops(crops: Sequence[float]) -> tuple[float, ...]:
    """Centre crops for photos, checked: at least one, distinct, each in [0.05, 1]."""
    checked = tuple(float(c) for c in crops)
    if not checked or any(not 0.05 <= crop <= 1.0 for crop in checked) or len(set(checked)) != len(checked):
        raise ConfigError(f"centre crops must be distinct and lie in [0.05, 1], got {list(checked)}")
    return checked


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
    dataset = _check_prepared_for_run(trained, dataset)
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
        return self.out_dir / SUMMARY_FILE

    @property
    def pairs_path(self) -> Path:
        return self.out_dir / PAIRS_FILE


def _attribute_labels(trained: TrainedRun, gates: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """Features read out from the gates (eq. 5) and, per image, the chosen label of each."""
    references = label_references(trained)
    if not references or not len(gates):
        return [], [[] for _ in range(len(gates))]
    estimates = estimate_attributes(torch.from_numpy(gates).float(), references)
    return [r.feature for r in references], [[e.label for e in row] for row in estimates]


def verify_pairs(trained: TrainedRun, pair_set: PairSet, *, out_name: str | None = None, flip: bool = False,
                 batch_size: int = 32) -> VerificationOutcome:
    """The verification protocol on `pair_set` with the run's embeddings; writes RUN/verify/<name>/.

    Pairs with a missing (or unreadable) image are skipped and listed in skipped-pairs.txt; more than half skipped is
    an error. Each distinct image is embedded once. Pairs with a person the run was trained on are counted and warned
    about: their accuracy is not verification of unseen people.
    """
    pairs = pair_set.pairs
    out_dir = trained.path / VERIFY_DIR / (out_name or pair_set.name)
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
    skipped_path = out_dir / SKIPPED_FILE
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
        # Each crop's cost weighted by the share of folds decided with it (one crop: its mean over the images).
        share = np.bincount(protocol.fold_candidates, minlength=len(crops)) / len(protocol.folds)
        gmacs = sum(w * float(getattr(e, gmacs_field)[used_rows].mean()) for w, e in zip(share, embedded_at))
        results[variant] = _protocol_dict(protocol, tars, float(gmacs), crops)
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
    _write_csv(out_dir / PAIRS_FILE, header, rows)

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
    write_json(out_dir / SUMMARY_FILE, summary)
    logger.info("verify: wrote %s and %s", out_dir / SUMMARY_FILE, out_dir / PAIRS_FILE)
    return VerificationOutcome(summary, out_dir)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)

    atomic_write_bytes(path, write)


# -------------------------------------------------------------------------------------------------------- galleries

@dataclass(frozen=True)
class GalleryImages:
    """A gallery's image files, each person's name, and how to cut them."""

    source: Path
    paths: list[Path]
    people: list[str]
    preprocessing: dict[str, Any]


def gallery_images(trained: TrainedRun, source: str | Path, center_crop: float | None = None) -> GalleryImages:
    """A gallery folder (one sub-folder per person, images inside) or a prepared dataset (every sample, its
    identity's name). `center_crop` cuts a folder's photos with that crop instead of the run's; a prepared
    dataset's faces are cut already, as it was prepared."""
    source = Path(source)
    if is_prepared_dataset(source):
        dataset = load_prepared(source)
        _check_prepared_for_run(trained, dataset)
        return GalleryImages(source, [Path(dataset.root) / s.path for s in dataset.samples],
                             [dataset.identities[s.identity].name for s in dataset.samples],
                             run_preprocessing(trained, prepared=True))
    if not source.is_dir():
        raise DataError(f"gallery {source} is neither a folder of people nor a prepared dataset")
    paths, people = [], []
    for person in sorted(p for p in source.iterdir() if p.is_dir()):
        for path in image_files(person):
            paths.append(path)
            people.append(person.name)
    if not paths:
        raise DataError(f"gallery {source}: no images in per-person sub-folders (expected {source}/<person>/<image>)")
    if len(set(people)) < 2:
        raise DataError(f"gallery {source} has {len(set(people))} person; at least 2 are needed to calibrate the "
                        "threshold on impostor pairs")
    return GalleryImages(source, paths, people, run_preprocessing(trained, prepared=False, center_crop=center_crop))


def gallery_cache_key(trained: TrainedRun, images: GalleryImages) -> str:
    """The fingerprint of the gallery files (path, size, mtime) and of the run's checkpoint file, and the fused
    graph's layout and the photos' centre crop unless they are the run's own (caches made with those keep their
    key)."""
    files = []
    for path in [*images.paths, trained.run.checkpoint_path(trained.checkpoint)]:
        stat = path.stat()
        files.append((path.resolve(), stat.st_size, stat.st_mtime))
    key = gallery_fingerprint(files)
    if trained.layout != DEFAULT_LAYOUT:
        key += f"-{trained.layout}"
    crop = float(images.preprocessing["center_crop"])
    if crop != float(run_preprocessing(trained, is_prepared_dataset(images.source))["center_crop"]):
        key += f"-crop{crop:g}"
    return key


@dataclass
class RunGallery:
    """A gallery embedded by a run: the searchable Gallery, its calibrated threshold and where it came from
    (`image_files`: its image files, resolved, by size in bytes, to recognise a query that is one of them)."""

    gallery: Gallery
    threshold: float
    far: float
    impostor_pairs: int
    images: int
    skipped: list[tuple[str, str]]
    cache_path: Path
    from_cache: bool
    image_files: dict[int, list[Path]]

    def holds_file(self, path: str | Path) -> bool:
        """Whether `path` is one of the gallery's image files or a byte-for-byte copy of one."""
        try:
            path = Path(path).resolve()
            return any(path == image or filecmp.cmp(path, image, shallow=False)
                       for image in self.image_files.get(path.stat().st_size, []))
        except OSError:  # a file that vanished since is no gallery image
            return False

    @property
    def false_alarm_bound(self) -> float:
        """Up to this share of strangers is named as someone at `far` per image pair (gallery.false_alarm_bound)."""
        return false_alarm_bound(self.far, self.images)

    def to_dict(self) -> dict[str, Any]:
        return {"people": len(self.gallery.people), "images": self.images, "threshold": self.threshold,
                "far": self.far, "false_alarm_bound": self.false_alarm_bound, "impostor_pairs": self.impostor_pairs,
                "cache": str(self.cache_path), "from_cache": self.from_cache,
                "skipped": [{"image": i, "error": e} for i, e in self.skipped]}


def impostor_scores(embeddings: np.ndarray, people: Sequence[str], limit: int = MAX_IMPOSTOR_SCORES) -> np.ndarray:
    """Cosine similarities of every pair of images of different people (a seeded sample of `limit` when more)."""
    codes = np.unique(np.asarray(people), return_inverse=True)[1]
    upper_first, upper_second = np.triu_indices(len(codes), k=1)
    different = codes[upper_first] != codes[upper_second]
    first, second = upper_first[different], upper_second[different]
    if len(first) > limit:
        chosen = np.random.default_rng(0).choice(len(first), size=limit, replace=False)
        first, second = first[chosen], second[chosen]
    return pair_similarities(embeddings, first, second)


def load_gallery(trained: TrainedRun, source: str | Path, *, far: float = 1e-3, batch_size: int = 32,
                 center_crop: float | None = None) -> RunGallery:
    """Embed a gallery (or read RUN/galleries/<fingerprint>.npz when its files have not changed) and calibrate the
    open-set threshold at `far` on the gallery's own impostor pairs (images of two different gallery people).

    `far` is a rate per image pair: a stranger meets every gallery image, so up to images x `far` of strangers are
    named as someone (`RunGallery.false_alarm_bound`). `center_crop`: see gallery_images."""
    if not 0.0 < far < 1.0:
        raise ConfigError(f"--far must lie in (0, 1), got {far}")
    images = gallery_images(trained, source, center_crop)
    key = gallery_cache_key(trained, images)
    cache_path = trained.path / GALLERIES_DIR / f"{key}.npz"
    from_cache = cache_path.is_file()
    if from_cache:
        try:
            with np.load(cache_path, allow_pickle=False) as cached:
                embeddings, names = cached["embeddings"], [str(n) for n in cached["people"]]
                skipped = [tuple(s.split("\t", 1)) for s in cached["skipped"].tolist()]
            logger.info("gallery: %d embeddings read from %s", len(names), cache_path)
        except (OSError, KeyError, ValueError) as error:
            logger.warning("gallery cache %s unreadable (%s): embedding again", cache_path, error)
            from_cache = False
    if not from_cache:
        logger.info("gallery: embedding %d images of %d people from %s", len(images.paths), len(set(images.people)),
                    images.source)
        embedded = embed_images(trained, images.paths, preprocessing=images.preprocessing, batch_size=batch_size)
        person_of = dict(zip(map(str, images.paths), images.people))
        embeddings, names = embedded.embeddings, [person_of[n] for n in embedded.names]
        skipped = embedded.failures
        if not names:
            raise DataError(f"gallery {images.source}: no image could be read")
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(f".{cache_path.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, embeddings=embeddings, people=np.array(names, dtype=str),
                 paths=np.array(embedded.names, dtype=str),
                 skipped=np.array([f"{i}\t{e}" for i, e in skipped], dtype=str))
        tmp.replace(cache_path)
    scores = impostor_scores(embeddings, names)
    if not len(scores):
        raise DataError(f"gallery {images.source}: no two readable images of different people to calibrate on")
    threshold = calibrate_threshold(scores, far)
    image_files: dict[int, list[Path]] = {}
    for path in images.paths:
        image_files.setdefault(path.stat().st_size, []).append(path.resolve())
    return RunGallery(Gallery(embeddings, names), threshold, far, len(scores), len(names), list(skipped), cache_path,
                      from_cache, image_files)


def search_gallery(trained: TrainedRun, run_gallery: RunGallery, images: Sequence[str | Path], *, top_k: int = 5,
                   batch_size: int = 32, center_crop: float | None = None) -> dict[str, SearchResult]:
    """Open-set answers for the readable query photos, keyed by the image as given (unreadable ones are absent).

    A query that is itself a gallery image (the same file or a copy) matches itself (similarity 1): its answer is
    marked `in_gallery` and a warning is logged, so that nobody takes it for recognition. The photos are cut as the
    run's dataset was prepared or, given `center_crop`, with that centre crop."""
    embedded = embed_images(trained, images, preprocessing=run_preprocessing(trained, False, center_crop),
                            batch_size=batch_size, names=[str(Path(p)) for p in images])
    if not embedded.names:
        return {}
    results = run_gallery.gallery.search(embedded.embeddings, run_gallery.threshold, top_k=top_k)
    answers = {name: replace(result, in_gallery=run_gallery.holds_file(name))
               for name, result in zip(embedded.names, results)}
    enrolled = [name for name, result in answers.items() if result.in_gallery]
    if enrolled:
        logger.warning("%d query photo(s) are images of the gallery itself or copies (%s%s): each matches itself "
                       "(similarity 1), which is not recognition", len(enrolled), ", ".join(enrolled[:3]),
                       ", ..." if len(enrolled) > 3 else "")
    return answers
