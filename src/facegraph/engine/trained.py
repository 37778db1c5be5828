"""A trained run, ready for inference: its model with the chosen checkpoint, masks and cost table."""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from facegraph import paper
from facegraph.config import RunConfig
from facegraph.errors import FacegraphError
from facegraph.flops import CostTable, cost_table
from facegraph.graphs import FeatureMasks
from facegraph.models import DEFAULT_LAYOUT, LAYOUTS, GatedResNet
from facegraph.rundir import BEST, EXPORT_FILE, LAST, RunDir, load_checkpoint, open_run, read_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)  # frozen: inference_model is cached from `model` and `layout`, so they must not change
class TrainedRun:
    """A run directory with its model loaded (evaluation mode) and what inference needs besides the weights."""

    run: RunDir
    config: RunConfig
    dataset: dict[str, Any]  # dataset.json
    model: GatedResNet
    checkpoint: str  # "best" or "last"
    feature_masks: dict[str, FeatureMasks]
    cost_table: CostTable
    layout: str = DEFAULT_LAYOUT  # the fused graph's memory layout, a key of models.LAYOUTS (engine.layout.use_layout)

    @property
    def path(self) -> Path:
        return self.run.path

    @functools.cached_property
    def inference_model(self) -> GatedResNet:
        """The fused inference graph (BatchNorm folded into convolutions, laid out as `layout`): what evaluate,
        predict and embed run. Outputs equal `model`'s (allclose, the same gate decisions); costs are counted on
        `model`."""
        return self.model.fuse_for_inference(LAYOUTS[self.layout])

    def with_layout(self, layout: str, inference_model: GatedResNet | None = None) -> TrainedRun:
        """This run with its fused graph laid out as `layout` (a key of models.LAYOUTS). `inference_model`, when
        given, is that graph already fused from `model` (engine.layout keeps the one it timed fastest), so it is not
        fused again."""
        if layout not in LAYOUTS:
            raise FacegraphError(f"unknown layout {layout!r}; layouts are {', '.join(LAYOUTS)}")
        chosen = self if layout == self.layout else dataclasses.replace(self, layout=layout)
        if inference_model is not None:
            if not (inference_model.is_fused and inference_model.memory_format == LAYOUTS[layout]):
                raise FacegraphError(f"the graph given for layout {layout} is not the model fused in that layout")
            chosen.__dict__.setdefault("inference_model", inference_model)  # where cached_property keeps its value
        return chosen


def load_trained(run_dir: str | Path, checkpoint: str = BEST, *, warn_unfinished: bool = True) -> TrainedRun:
    """The run's model in evaluation mode with its `best` (or `last`) weights. A missing best checkpoint is an error,
    never a silent fallback to `last`; an unfinished run is loaded with a warning."""
    if checkpoint not in (BEST, LAST):
        raise FacegraphError(f"checkpoint must be {BEST} or {LAST}, got {checkpoint!r}")
    refuse_traced_export(run_dir)
    run = open_run(run_dir)
    config, dataset = run.config(), run.dataset()
    if warn_unfinished and not run.is_done:
        logger.warning("%s has not finished training (no %s): using its %s checkpoint so far", run.path,
                       run.done_path.name, checkpoint)
    state = load_checkpoint(run.checkpoint_path(checkpoint))
    model = paper.model_from_config(config, len(dataset["identities"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise FacegraphError(f"{run.checkpoint_path(checkpoint)} does not fit the model of {run.config_path}: "
                             f"{str(error).splitlines()[0]}") from None
    model.eval()
    masks = {m.feature: m for m in paper.iig_masks(config, model.num_gates, dataset["features"])}
    return TrainedRun(run, config, dataset, model, checkpoint, masks, cost_table(model, dataset["image_size"]))


def refuse_traced_export(path: str | Path) -> None:
    """A one-line error for a folder `facegraph export` wrote in a format facegraph does not load back (torchscript,
    onnx: no weights a GatedResNet takes); a state-dict export is a minimal run directory and passes."""
    description = Path(path) / EXPORT_FILE
    if not description.is_file():
        return
    exported = read_json(description)
    kind = exported.get("format") if isinstance(exported, dict) else None
    if kind in ("torchscript", "onnx"):
        raise FacegraphError(f"{path} is a {kind} export: load it with torch.jit.load or an ONNX runtime, or "
                             f"export the run with --format state-dict for facegraph.load")
    if kind != "state-dict":
        raise FacegraphError(f"{description} does not describe a state-dict export (format: {kind!r}): facegraph "
                             f"loads runs and state-dict exports only")


def inference_precision(config: RunConfig, device: torch.device) -> str:
    """The run's own precision for inference, so an image takes the graph evaluate gives it (fp16 is CUDA-only)."""
    return config.train.precision if device.type == "cuda" or config.train.precision != "fp16" else "fp32"
