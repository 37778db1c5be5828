"""Embeddings of photos with a trained run: how a run cuts them, and the pooled features before its classifier.

Preprocessing comes from the run. A user's photo (an LFW folder, a gallery folder) is cut, resized and normalised as
the run's dataset was prepared (`dataset.json`: image size, centre crop, mean, std). An image of a *prepared* dataset
is already a cut face: it is only resized to the run's image size and normalised (centre crop 1).

Embeddings are the L2-normalised pooled features before the classifier (`GatedResNet.embed`), computed with
deterministic, skipping gates; each image's cost is the run's cost table at its own gate vector. Flip test-time
augmentation embeds the image and its mirror image and renormalises their sum.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegraph import paper
from facegraph.data.images import (IMAGE_EXTENSIONS, PREPROCESSING_KEYS, inference_params,
                                   load_faces_for_inference)
from facegraph.data.prepared import PREPARE_FILE, PreparedDataset, load_prepared
from facegraph.engine.trained import TrainedRun, inference_precision
from facegraph.errors import ConfigError, DataError, FacegraphError
from facegraph.rundir import OTHER_PHOTOS, dataset_difference, dataset_fingerprint, preparation_fingerprint

logger = logging.getLogger(__name__)


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
    preprocessing = {key: trained.dataset[key] for key in PREPROCESSING_KEYS}
    if prepared:
        preprocessing["center_crop"] = 1.0
    elif center_crop is not None:
        preprocessing["center_crop"] = check_center_crops([center_crop])[0]
    return preprocessing


def check_center_crops(crops: Sequence[float]) -> tuple[float, ...]:
    """Centre crops for photos, checked: at least one, distinct, each in [0.05, 1]."""
    checked = tuple(float(c) for c in crops)
    if not checked or any(not 0.05 <= crop <= 1.0 for crop in checked) or len(set(checked)) != len(checked):
        raise ConfigError(f"centre crops must be distinct and lie in [0.05, 1], got {list(checked)}")
    return checked


def is_prepared_dataset(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / PREPARE_FILE).is_file()


def prepared_for_run(trained: TrainedRun, dataset: PreparedDataset) -> PreparedDataset:
    """`dataset`, warned about when its faces are framed unlike the run's; the run's own dataset comes back in the
    run's splits (its cross-validation fold), any other as prepared."""
    if abs(dataset.center_crop - float(trained.dataset.get("center_crop", 1.0))) > 1e-9:
        logger.warning("%s was prepared with centre crop %g, the run's dataset with %g: faces are framed differently",
                       dataset.root, dataset.center_crop, trained.dataset.get("center_crop", 1.0))
    if trained.config.data.folds:
        # The same photos, however their pixels were prepared: the fold is dealt from the manifest alone.
        difference = dataset_difference(trained.dataset, dataset_fingerprint(Path(dataset.root)),
                                        preparation_fingerprint(dataset.info))
        if difference != OTHER_PHOTOS:
            return paper.run_dataset(trained.config, dataset)
    return dataset


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder` (by extension, following linked folders), sorted; the other files are counted
    in one warning, so that none is left out unsaid."""
    files, seen = [], set()
    for root, folders, names in os.walk(folder, followlinks=True):
        if os.path.realpath(root) in seen:  # a link back to a folder already read: a loop, not more photos
            folders.clear()
            continue
        seen.add(os.path.realpath(root))
        files += [Path(root) / name for name in names if not name.startswith(".")]
    files.sort()
    images = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
    if len(images) < len(files):
        others = sorted({path.suffix.lower() or "(none)" for path in set(files) - set(images)})
        logger.warning("%s: %d files not read as photos (extensions %s; photos are %s)", folder,
                       len(files) - len(images), ", ".join(others), ", ".join(sorted(IMAGE_EXTENSIONS)))
    return images


def resolve_images(trained: TrainedRun, sources: Sequence[str | Path], split: str | None = None) -> tuple[list[Path], dict[str, Any]]:
    """Image paths and their preprocessing from the command line's IMAGES_OR_PREPARED.

    One prepared dataset: its samples (of `split` if given); one folder: every image file under it; otherwise the
    files themselves (a missing or unreadable one is reported by `embed_images`).
    """
    if not sources:
        raise FacegraphError("give at least one image, image folder or prepared dataset")
    if len(sources) == 1 and is_prepared_dataset(sources[0]):
        dataset = load_prepared(sources[0])
        dataset = prepared_for_run(trained, dataset)
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
