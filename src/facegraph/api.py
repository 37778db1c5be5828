"""The public Python API, re-exported by `facegraph/__init__.py` (docs/api.md): load a trained run or an export, ask
it about photos, build a fresh network, export a run for sharing.

    import facegraph
    model = facegraph.load("runs/iig")                    # a run directory or a folder `facegraph export` wrote
    embeddings, gates = model.embed(["a.jpg", "b.jpg"])   # L2-normalised penultimate features, gates used
    predictions = model.predict(["a.jpg"])                # top-5 identities, gates, cost, attributes
    attributes = model.read_attributes(["a.jpg"])         # eq. 5, per feature

Everything else in the package is private: names, modules and signatures may change between releases.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageFile

from facegraph import __version__
from facegraph.config import RunConfig, load_config
from facegraph.data.images import FaceCrop, cut_face, inference_params, load_image_for_inference, normalize
from facegraph.engine.allocator import keep_freed_memory
from facegraph.engine.layout import use_layout
from facegraph.engine.predict import (
    AttributeEstimate, PhotoPrediction, PredictionFailure, estimate_attributes, label_references, predict_images,
)
from facegraph.engine.trained import TrainedRun, inference_precision, load_trained
from facegraph.errors import DataError, FacegraphError
from facegraph.models import LAYOUTS, Embeddings, GatedOutput, GatedResNet
from facegraph.models import build_model as _build_model
from facegraph.rundir import BEST, CHECKPOINTS, CONFIG_FILE, DATASET_FILE, EVAL_DIR, EXPORT_FILE, open_run, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "EXPORT_FILE", "EXPORT_FORMATS", "Embeddings", "FaceModel", "ImageInput", "build_model", "export",
    "keep_freed_memory", "load", "load_config",
]

ImageInput = Union[str, Path, Image.Image, torch.Tensor]
EXPORT_FORMATS = ("state-dict", "torchscript", "onnx")
TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
# dataset.json keys an export keeps: preprocessing, identity names and attribute labels (no local paths).
SHARED_DATASET_KEYS = ("image_size", "center_crop", "mean", "std", "identities", "features")
TRACED_PRECISION = "fp32"  # what a traced export computes in, whatever the run infers in
DENSE_EXECUTION = ("dense: every block runs and a closed gate multiplies its residual branch by 0 (eq. 1 by masking); "
                   "the same logits and gates as the skipping model in fp32 (a run that infers in bf16 or fp16 differs "
                   "by that rounding in its logits, now and then in a gate or a top-1 answer), no saving in compute; "
                   "the fused inference graph (BatchNorm folded into the convolutions and the gates' first linear "
                   "layer), NCHW")
# What a traced export returns; embeddings stay out so that `logits, gate_values = model(images)` keeps working.
TRACED_OUTPUTS = {"logits": "(B, identities): scores of the run's training identities, not face embeddings (those: a "
                            "state-dict export and FaceModel.embed); a cosine classifier's are cosines, probabilities "
                            "softmax(logit_scale * logits)",
                  "gate_values": "(B, gated blocks), 0/1"}


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
            params = inference_params(self.trained.dataset)
            face = cut_face(image.copy(), FaceCrop(center_fraction=params.center_crop), params.image_size,
                            "PIL image", upright=True)
            return normalize(torch.from_numpy(np.array(face)).permute(2, 0, 1), params.mean, params.std).contiguous()
        if isinstance(image, (str, Path)):
            return load_image_for_inference(image, self.trained.dataset)
        raise DataError(f"preprocess takes a file path or a PIL image, got {type(image).__name__}")

    def batch(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Images (paths, PIL images, preprocessed tensors, or a list of them) as one (B, 3, S, S) batch."""
        if isinstance(images, torch.Tensor):
            parts = [images]
        elif isinstance(images, (str, Path, Image.Image)):
            parts = [self.preprocess(images)]
        else:
            parts = [image if isinstance(image, torch.Tensor) else self.preprocess(image) for image in images]
        if not parts:
            raise DataError("give at least one image")
        parts = [part.unsqueeze(0) if part.dim() == 3 else part for part in parts]
        size = self.image_size
        for part in parts:
            if part.dim() != 4 or tuple(part.shape[1:]) != (3, size, size):
                raise DataError(f"expected preprocessed images of shape (3, {size}, {size}) or (B, 3, {size}, {size}), "
                                f"got {tuple(part.shape)}; pass a path or PIL image to have it preprocessed")
        return torch.cat([part.float() for part in parts]).to(self.device)

    def infer(self, images: ImageInput | Sequence[ImageInput], *, skip: bool = True) -> GatedOutput:
        """Logits (B, identities) and 0/1 gate values (B, gated blocks), closed blocks skipped unless `skip=False`.
        With a cosine classifier the logits are cosines (probabilities: softmax(model.logit_scale * logits))."""
        return self.trained.inference_model.infer(self.batch(images), skip=skip, precision=self.precision)

    def embed(self, images: ImageInput | Sequence[ImageInput], *, skip: bool = True) -> Embeddings:
        """Face embeddings for verification: `(embeddings, gate_values)`, the L2-normalised pooled features
        (B, feature channels) before the classifier, and the gates the photos took (B, gated blocks)."""
        return self.trained.inference_model.embed(self.batch(images), skip=skip, precision=self.precision)

    def predict(self, images: str | Path | Sequence[str | Path], *,
                batch_size: int = 32) -> list[PhotoPrediction | PredictionFailure]:
        """What `facegraph predict` answers, per photo file in input order: top-5 identities with probabilities, the
        gated blocks that ran, the attributes read out from the gates (eq. 5) and the GMACs it cost. An unreadable
        photo gets a `PredictionFailure` naming it; the others are still answered."""
        paths = [images] if isinstance(images, (str, Path)) else list(images)
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


def load(path: str | Path, checkpoint: str = BEST, *, device: str | torch.device = "cpu") -> FaceModel:
    """A trained run directory (or a folder `facegraph export --format state-dict` wrote) ready for inference: its
    `best` (or `last`) weights in evaluation mode, on `device`."""
    model = FaceModel(load_trained(path, checkpoint))  # which refuses a torchscript or ONNX export, naming it
    model.trained.model.to(device)
    return model


# ------------------------------------------------------------------------------------------------------- export

def _check_out(out: Path, run_path: Path) -> None:
    out_resolved, run_resolved = out.resolve(), run_path.resolve()
    if out_resolved == run_resolved or run_resolved in out_resolved.parents or out_resolved in run_resolved.parents:
        raise FacegraphError(f"--out {out} overlaps the run directory {run_path}: choose a folder apart from it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FacegraphError(f"--out {out} exists and is not an empty folder")


def _write_shared_files(trained: TrainedRun, out: Path) -> dict[str, Any]:
    """config.json and dataset.json (preprocessing, identities, labels; no local paths) of an export."""
    dataset = {key: trained.dataset[key] for key in SHARED_DATASET_KEYS if key in trained.dataset}
    write_json(out / CONFIG_FILE, trained.run.config_dict())
    write_json(out / DATASET_FILE, dataset)
    return dataset


def _export_state_dict(trained: TrainedRun, out: Path, dataset: dict[str, Any]) -> dict[str, Any]:
    """The export as a minimal run directory: `facegraph.load` and `facegraph predict` take it as they take a run."""
    state = {key: value.detach().clone().contiguous() for key, value in trained.model.state_dict().items()}
    weights = out / CHECKPOINTS / f"{BEST}.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, weights)
    prototypes = {feature: {"prototypes": result["prototypes"]}
                  for split in ("test", "val") if (evaluation := trained.run.evaluation(split)) is not None
                  for feature, result in evaluation.get("readout", {}).items()
                  if feature in dataset.get("features", {}) and result.get("prototypes") is not None}
    if prototypes:  # the train-split prototypes eq. 5 compares with for features without IIG masks
        write_json(out / EVAL_DIR / "test.json", {"readout": prototypes})
    if trained.run.is_done:  # a finished run's export loads without the "not finished training" warning
        shutil.copyfile(trained.run.done_path, out / trained.run.done_path.name)
    return {"weights": str(weights.relative_to(out)),
            "load": "facegraph.load(FOLDER), or torch.load(weights, weights_only=True)['model'] as a state dict"}


def _traced(trained: TrainedRun) -> torch.jit.ScriptModule:
    """TorchScript of the run's fused inference graph (fp32, CPU, NCHW: no layout a runtime must know of), by tracing
    its dense forward pass (gates by masking): skipping selects images by the gates' values, control flow a trace
    cannot record."""
    model = trained.model.fuse_for_inference(LAYOUTS["nchw"]).float().cpu()  # a copy: the run's model stays as it is
    image_size = int(trained.dataset["image_size"])
    example = torch.zeros(2, 3, image_size, image_size)

    class Dense(torch.nn.Module):
        def __init__(self, network: GatedResNet) -> None:
            super().__init__()
            self.network = network

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, gate_values = self.network(images, skip=False)
            return logits, gate_values

    wrapper = Dense(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, yet what tools without torch.export load
        return torch.jit.trace(wrapper, example, check_trace=False)


def _export_torchscript(trained: TrainedRun, out: Path) -> dict[str, Any]:
    traced = _traced(trained)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced.save(str(out / TORCHSCRIPT_FILE))
    return {"model": TORCHSCRIPT_FILE, "execution": DENSE_EXECUTION,
            "load": "torch.jit.load(model); model(images) -> (logits, gate_values)", "outputs": TRACED_OUTPUTS}


def _export_onnx(trained: TrainedRun, out: Path) -> dict[str, Any]:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise FacegraphError("ONNX export needs the onnx package: pip install 'facegraph[onnx]'") from None
    size = int(trained.dataset["image_size"])
    traced = _traced(trained)
    try:
        torch.onnx.export(traced, (torch.zeros(2, 3, size, size),), str(out / ONNX_FILE), input_names=["images"],
                          output_names=["logits", "gate_values"], dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "gate_values": {0: "batch"}})
    except Exception as error:  # the exporter raises many types; the user gets one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FacegraphError(f"ONNX export failed: {first_line}") from None
    return {"model": ONNX_FILE, "execution": DENSE_EXECUTION,
            "inputs": {"images": "float32 (B, 3, S, S), preprocessed as dataset.json says"},
            "outputs": TRACED_OUTPUTS}


def export(run_dir: str | Path, out: str | Path, *, format: str = "state-dict", checkpoint: str = BEST) -> dict[str, Any]:
    """Write what a user shares of a run into the new folder `out` and return its `export.json` description.

    Every format writes config.json and dataset.json (preprocessing, identity names, attribute labels) and
    export.json. "state-dict": checkpoints/best.pt holding only the weights (no optimizer or RNG state; loads with
    `torch.load(..., weights_only=True)`), a folder `facegraph.load` and `facegraph predict` accept as a run.
    "torchscript" / "onnx": the fused inference graph traced in dense mode (gates applied by masking, see
    DENSE_EXECUTION) in fp32, returning logits and gate values (TRACED_OUTPUTS), not embeddings; a run that infers
    in another precision gets a warning. export.json records `precision` (the export's), `run_precision` and
    `logit_scale`. ONNX needs the `onnx` package (`pip install 'facegraph[onnx]'`).
    """
    if format not in EXPORT_FORMATS:
        raise FacegraphError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    out = Path(out)
    _check_out(out, open_run(run_dir).path)
    if format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise FacegraphError("ONNX export needs the onnx package: pip install 'facegraph[onnx]'") from None
    trained = load_trained(run_dir, checkpoint)
    run_precision = trained.config.train.precision
    precision = run_precision if format == "state-dict" else TRACED_PRECISION  # a state-dict loads with its config
    out.mkdir(parents=True, exist_ok=True)
    try:
        dataset = _write_shared_files(trained, out)
        if format == "state-dict":
            files = _export_state_dict(trained, out, dataset)
        elif format == "torchscript":
            files = _export_torchscript(trained, out)
        else:
            files = _export_onnx(trained, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave half an export that looks whole
        raise
    description = {
        "format": format, "facegraph": __version__, "torch": torch.__version__,
        "source_run": str(trained.path), "checkpoint": checkpoint,
        "arch": trained.config.model.arch, "variant": trained.config.model.variant,
        "image_size": dataset["image_size"], "num_classes": len(dataset["identities"]),
        "gated_blocks": list(trained.model.gated_blocks), "precision": precision, "run_precision": run_precision,
        "classifier": trained.model.classifier, "logit_scale": trained.model.logit_scale, **files,
    }
    write_json(out / EXPORT_FILE, description)
    if precision != run_precision:
        logger.warning("%s infers in %s, its %s export in %s: the export agrees with the run's %s inference, not "
                       "exactly with `facegraph predict` (logits differ by %s rounding, now and then a gate or a top-1 "
                       "answer)", trained.path, run_precision, format, precision, precision, run_precision)
    return description

