"""The public Python API, re-exported by `facegraph/__init__.py` (docs/api.md): load a trained run or an export, ask
it about photos, build a fresh network, export a run for sharing.

    import facegraph
    model = facegraph.load("runs/iig")                    # a run directory or a state-dict export
    embeddings, gates = model.embed(["a.jpg", "b.jpg"])   # L2-normalised penultimate features, gates used
    predictions = model.predict(["a.jpg"])                # top-5 identities, gates, cost, attributes
    attributes = model.read_attributes(["a.jpg"])         # eq. 5, per feature

Everything else in the package is private: names, modules and signatures may change between releases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from PIL import Image, ImageFile

from facegraph.config import RunConfig, load_config
from facegraph.data.images import face_for_inference, inference_params, load_image_for_inference
from facegraph.engine.allocator import keep_freed_memory
from facegraph.engine.export import EXPORT_FORMATS, export_run
from facegraph.engine.layout import use_layout
from facegraph.engine.predict import (
    AttributeEstimate, PhotoPrediction, PredictionFailure, estimate_attributes, label_references, predict_images,
)
from facegraph.engine.trained import TrainedRun, inference_precision, load_trained
from facegraph.errors import DataError
from facegraph.models import Embeddings, GatedOutput, GatedResNet
from facegraph.models import build_model as _build_model
from facegraph.rundir import BEST, EXPORT_FILE

__all__ = [
    "EXPORT_FILE", "EXPORT_FORMATS", "AttributeEstimate", "Embeddings", "FaceModel", "GatedOutput", "ImageInput",
    "PhotoPrediction", "PredictionFailure", "build_model", "export", "keep_freed_memory", "load", "load_config",
]

ImageInput = Union[str, Path, Image.Image, torch.Tensor]


def build_model(arch: str, num_classes: int, **options: Any) -> GatedResNet:
    """A fresh, untrained network: a ResNet when `target_rates` is None, else a ConvNet-AIG/IIG (eq. 1).

    Keyword options: `width`, `target_rates` (one per residual block, 1.0 = never gated), `gate_hidden`,
    `initial_open_rate`, `temperature`, `classifier` ("linear" or "cosine"), `logit_scale`. Its forward pass returns
    `(logits, gate_values)`; use `facegraph.load_config` plus the CLI for the paper's configured networks.
    """
    return _build_model(arch, num_classes, **options)


@dataclass
class FaceModel:
    """A trained model in evaluation mode with its preprocessing, identity names and attribute read-out.

    Images may be given as file paths, PIL images or tensors; a tensor is taken as already preprocessed (float32,
    (3, S, S) or (B, 3, S, S) at the run's image size, normalised as `preprocess` does).
    """

    trained: TrainedRun

    @property
    def model(self) -> GatedResNet:
        """The network (a torch module in evaluation mode); `model(images)` returns `(logits, gate_values)`."""
        return self.trained.model

    @property
    def config(self) -> RunConfig:
        return self.trained.config

    @property
    def identities(self) -> list[str]:
        """Identity names, in the order of the classifier's outputs."""
        return list(self.trained.dataset["identities"])

    @property
    def features(self) -> dict[str, list[str]]:
        """Attribute features of the training data and their labels (what `read_attributes` can estimate)."""
        return dict(self.trained.dataset.get("features", {}))

    @property
    def image_size(self) -> int:
        return int(self.trained.dataset["image_size"])

    @property
    def path(self) -> Path:
        return self.trained.path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """The run's own inference precision on this device (fp16 runs in fp32 off CUDA)."""
        return inference_precision(self.config, self.device)

    @property
    def layout(self) -> str:
        """The memory layout of the fused graph that `infer`, `embed` and `predict` run: "channels_last" or "nchw"."""
        return self.trained.layout

    def use_layout(self, layout: str, *, batch_size: int = 32) -> str:
        """Lay the fused inference graph out as "channels_last" (the default), "nchw", or "auto": whichever runs
        `batch_size` photos faster on this machine, timed now (docs/results.md: one photo at a time through a wide
        network can run faster in NCHW). Returns the layout in use."""
        self.trained, _ = use_layout(self.trained, layout, batch_size=batch_size)
        return self.trained.layout

    def preprocess(self, image: str | Path | Image.Image) -> torch.Tensor:
        """A photo of any size cut, resized and normalised as the run's dataset was prepared: float32 (3, S, S).

        A PIL image opened from a file and not yet decoded is read from that file, as a path is: a large JPEG is
        then decoded at reduced scale, as preparing did. An image already decoded (or made in memory) is cut from
        its full decode, which can differ from that by a few levels per pixel.
        """
        if isinstance(image, ImageFile.ImageFile) and image.tile and image.filename:
            image = Path(image.filename)  # not decoded yet: decode it as preparing did, leaving the caller's object
        if isinstance(image, Image.Image):
            return face_for_inference(image.copy(), inference_params(self.trained.dataset), "PIL image")
        if isinstance(image, (str, Path)):
            return load_image_for_inference(image, self.trained.dataset)
        raise DataError(f"preprocess takes a file path or a PIL image, got {type(image).__name__}")

    def batch(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Images (paths, PIL images, preprocessed tensors, or a list of them) as one (B, 3, S, S) batch."""
        parts = [image if isinstance(image, torch.Tensor) else self.preprocess(image) for image in _as_list(images)]
        if not parts:
            raise DataError("give at least one image")
        parts = [part.unsqueeze(0) if part.dim() == 3 else part for part in parts]
        size = self.image_size
        for part in parts:
            if not part.is_floating_point():
                raise DataError(f"a {part.dtype} tensor: tensors are taken as preprocessed float images; pass the "
                                f"photo as a PIL image (Image.fromarray) or a path to have it preprocessed")
            if part.dim() != 4 or tuple(part.shape[1:]) != (3, size, size):
                raise DataError(f"expected preprocessed images of shape (3, {size}, {size}) or (B, 3, {size}, {size}), "
                                f"got {tuple(part.shape)}; pass a path or PIL image to have it preprocessed")
        return torch.cat([part.float() for part in parts]).to(self.device)

    def infer(self, images: ImageInput | Sequence[ImageInput], *, skip: bool = True,
              batch_size: int = 64) -> GatedOutput:
        """Logits (B, identities) and 0/1 gate values (B, gated blocks), closed blocks skipped unless `skip=False`.
        With a cosine classifier the logits are cosines (probabilities: softmax(model.logit_scale * logits)).
        Photos are read and run `batch_size` at a time, so memory does not grow with their number."""
        return _concatenated([self.trained.inference_model.infer(self.batch(group), skip=skip, precision=self.precision)
                              for group in _groups(images, batch_size)])

    def embed(self, images: ImageInput | Sequence[ImageInput], *, skip: bool = True,
              batch_size: int = 64) -> Embeddings:
        """Face embeddings for verification: `(embeddings, gate_values)`, the L2-normalised pooled features
        (B, feature channels) before the classifier, and the gates the photos took (B, gated blocks); read and run
        `batch_size` photos at a time."""
        return _concatenated([self.trained.inference_model.embed(self.batch(group), skip=skip, precision=self.precision)
                              for group in _groups(images, batch_size)])

    def predict(self, images: str | Path | Sequence[str | Path], *,
                batch_size: int = 32) -> list[PhotoPrediction | PredictionFailure]:
        """What `facegraph predict` answers, per photo file in input order: top-5 identities with probabilities, the
        gated blocks that ran, the attributes read out from the gates (eq. 5) and the GMACs it cost. An unreadable
        photo gets a `PredictionFailure` naming it; the others are still answered."""
        paths = _as_list(images)
        if not paths:
            raise DataError("predict: give at least one image")
        other = [type(p).__name__ for p in paths if not isinstance(p, (str, Path))]
        if other:
            raise DataError(f"predict takes photo files (paths), got {other[0]}; use infer() or embed() for "
                            f"PIL images and tensors")
        return predict_images(self.trained, paths, batch_size=batch_size)

    def read_attributes(self, images: ImageInput | Sequence[ImageInput]) -> list[dict[str, AttributeEstimate]]:
        """Eq. 5 per image: feature -> the label whose IIG mask (or stored train-split prototype) lies nearest to the
        gates the image took, with every label's distance. Features with neither are left out."""
        _, gate_values = self.infer(images)
        estimates = estimate_attributes(gate_values.cpu(), label_references(self.trained))
        return [{estimate.feature: estimate for estimate in row} for row in estimates]


def _as_list(images: Any) -> list:
    """One image (a path, a PIL image, a tensor) or a list (any iterable) of them, as a list; anything else is named."""
    if isinstance(images, (str, Path, Image.Image, torch.Tensor)):
        return [images]
    if isinstance(images, Iterable) and not isinstance(images, (bytes, bytearray, Mapping)):
        images = list(images)
        for index, image in enumerate(images):
            if not isinstance(image, (str, Path, Image.Image, torch.Tensor)):
                raise DataError(f"image {index}: expected a path, a PIL image or a preprocessed tensor, got "
                                f"{type(image).__name__}")
        return images
    raise DataError(f"expected a path, a PIL image, a preprocessed tensor or a list of them, got "
                    f"{type(images).__name__}")


def _groups(images: Any, batch_size: int) -> list:
    """The images in groups of at most `batch_size` (a (B, 3, S, S) tensor split along B)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return [[chunk] for chunk in images.split(batch_size)] or [[images]]
    items = _as_list(images)
    return [items[start:start + batch_size] for start in range(0, len(items), batch_size)] or [items]


def _concatenated(outputs: list[Any]) -> Any:
    """Per-group outputs (named tuples of tensors) as one, each field concatenated along the batch."""
    return type(outputs[0])(*(torch.cat(field) for field in zip(*outputs)))


def load(path: str | Path, checkpoint: str = BEST, *, device: str | torch.device = "cpu") -> FaceModel:
    """A trained run directory (or a folder `facegraph export --format state-dict` wrote) ready for inference: its
    `best` (or `last`) weights in evaluation mode, on `device`."""
    model = FaceModel(load_trained(path, checkpoint))  # which refuses a torchscript or ONNX export, naming it
    model.trained.model.to(device)
    return model


def export(run_dir: str | Path, out: str | Path, *, format: str = "state-dict", checkpoint: str = BEST) -> dict[str, Any]:
    """Write what a user shares of a run into the new folder `out` and return its `export.json` description.

    Every format writes config.json and dataset.json (preprocessing, identity names, attribute labels) and
    export.json. "state-dict": checkpoints/best.pt holding only the weights (no optimizer or RNG state; loads with
    `torch.load(..., weights_only=True)`), a folder `facegraph.load` and `facegraph predict` accept as a run.
    "torchscript" / "onnx": the fused inference graph traced in dense mode (gates applied by masking, see
    DENSE_EXECUTION in engine/export.py) in fp32, returning logits and gate values (TRACED_OUTPUTS there), not
    embeddings; a run that infers in another precision gets a warning. export.json records `precision` (the
    export's), `run_precision` and `logit_scale`. ONNX needs the `onnx` package (`pip install 'facegraph[onnx]'`).
    """
    return export_run(run_dir, out, format=format, checkpoint=checkpoint)
