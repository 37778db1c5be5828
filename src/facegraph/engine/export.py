"""`facegraph export`: what a user shares of a trained run, written into a new folder with an export.json describing it.

"state-dict" is a minimal run directory (weights only, config, preprocessing, stored prototypes) that facegraph loads
back; "torchscript" and "onnx" trace the fused inference graph for use without facegraph.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from facegraph import __version__
from facegraph.engine.trained import TrainedRun, load_trained
from facegraph.errors import FacegraphError
from facegraph.models import LAYOUTS, GatedResNet
from facegraph.rundir import (BEST, CHECKPOINTS, CONFIG_FILE, DATASET_FILE, EVAL_DIR, EXPORT_FILE, open_run,
                              prototypes_as_json, write_json)

logger = logging.getLogger(__name__)

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


def _check_out(out: Path, run_path: Path) -> None:
    out_resolved, run_resolved = out.resolve(), run_path.resolve()
    if out_resolved == run_resolved or run_resolved in out_resolved.parents or out_resolved in run_resolved.parents:
        raise FacegraphError(f"--out {out} overlaps the run directory {run_path}: choose a folder apart from it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FacegraphError(f"--out {out} exists and is not an empty folder")


def _require_onnx() -> None:
    """torch's ONNX exporter imports the onnx package: say what to install before any work is done."""
    try:
        importlib.import_module("onnx")
    except ImportError:
        raise FacegraphError("ONNX export needs the onnx package: pip install 'facegraph[onnx]'") from None


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
    # The train-split prototypes eq. 5 compares with for features without IIG masks: the ones the run itself reads.
    prototypes = trained.run.stored_prototypes(dataset.get("features", {}), trained.model.num_gates, torch.float64)
    if prototypes:
        readout = {feature: {"prototypes": prototypes_as_json(rows)} for feature, rows in prototypes.items()}
        write_json(out / EVAL_DIR / "test.json", {"readout": readout})
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


def export_run(run_dir: str | Path, out: str | Path, *, format: str, checkpoint: str) -> dict[str, Any]:
    """Write run `run_dir`'s `checkpoint` as `format` into the new folder `out`; return export.json's description
    (facegraph.export documents the formats). A failed export leaves no folder behind."""
    if format not in EXPORT_FORMATS:
        raise FacegraphError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    out = Path(out)
    _check_out(out, open_run(run_dir).path)
    if format == "onnx":
        _require_onnx()
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
