"""Training-free verification baselines: raw pixels and PCA eigenfaces (Turk & Pentland 1991), as unit embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegraph.errors import ConfigError, DataError


def _flat(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) or (N, D) images -> (N, D) float64."""
    flat = np.asarray(images, dtype=np.float64)
    if flat.ndim not in (2, 4) or not len(flat):
        raise DataError(f"images must be a non-empty (N, C, H, W) or (N, D) array, got shape {flat.shape}")
    return flat.reshape(len(flat), -1)


def _unit(rows: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (all-zero rows stay zero: cosine 0 with everything); float32."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def raw_pixel_embeddings(images: np.ndarray) -> np.ndarray:
    """(N, D) unit embeddings: each image flattened, minus its own mean pixel value, L2-normalised (so the cosine of
    two embeddings is the Pearson correlation of the two images' pixels); a flat image gives zeros."""
    flat = _flat(images)
    centred = flat - flat.mean(axis=1, keepdims=True)
    flat_images = np.ptp(flat, axis=1) == 0  # their centred rows are rounding noise, not a direction
    return _unit(np.where(flat_images[:, None], 0.0, centred))


@dataclass(frozen=True)
class PcaModel:
    """Eigenfaces: the training mean (D,), the leading principal axes (k, D) and their standard deviations (k,)."""

    mean: np.ndarray
    components: np.ndarray
    stds: np.ndarray
    whiten: bool

    def project(self, images: np.ndarray) -> np.ndarray:
        """(N, k) unit embeddings: centred images on the principal axes (divided by each axis' std if whitening)."""
        flat = _flat(images)
        if flat.shape[1] != self.mean.shape[0]:
            raise DataError(f"images have {flat.shape[1]} values each, the PCA was fitted on {self.mean.shape[0]}")
        coordinates = (flat - self.mean) @ self.components.T
        return _unit(coordinates / self.stds if self.whiten else coordinates)


def fit_pca(train_images: np.ndarray, components: int, whiten: bool = False) -> PcaModel:
    """Fit eigenfaces by SVD of the centred training images; `components` must not exceed the data's rank."""
    flat = _flat(train_images)
    mean = flat.mean(axis=0)
    centred = flat - mean
    _, singular_values, axes = np.linalg.svd(centred, full_matrices=False)
    rank = int((singular_values > singular_values[0] * 1e-10).sum()) if singular_values[0] > 0 else 0
    if not 1 <= components <= rank:
        raise ConfigError(f"PCA components must be 1..{rank} (the rank of {len(flat)} centred training images), "
                          f"got {components}")
    stds = singular_values[:components] / np.sqrt(max(len(flat) - 1, 1))
    return PcaModel(mean=mean, components=axes[:components], stds=stds, whiten=whiten)
