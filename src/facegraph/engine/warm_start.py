"""Starting a training from another run (model.init_from): its weights to begin with, and its logits to distil."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from facegraph.engine.trained import load_trained, refuse_traced_export
from facegraph.errors import FacegraphError
from facegraph.models import GatedResNet
from facegraph.rundir import BEST, CHECKPOINTS, RunDir, load_checkpoint, open_run

logger = logging.getLogger(__name__)


def warm_start(model: GatedResNet, source: str | Path, identities: list[str]) -> list[str]:
    """Load a trained run's weights (its best.pt; or a checkpoint file) into `model`, as ConvNet-AIG's --pretrained:
    the backbone always, the classifier only when the source is known to be trained on the same identities (in the
    same order: a run directory, or a checkpoint inside one), the gates never (they start at their initial open
    rate). Returns the names of the tensors loaded; an error names every tensor whose shape does not fit."""
    path = Path(source)
    source_identities = None
    if path.is_dir():
        refuse_traced_export(path)
        run = open_run(path)
        source_identities = run.dataset().get("identities")
        path = run.checkpoint_path(BEST)
    elif path.parent.name == CHECKPOINTS and RunDir(path.parent.parent).dataset_path.is_file():
        source_identities = RunDir(path.parent.parent).dataset().get("identities")
    weights = load_checkpoint(path)["model"]
    own = model.state_dict()
    # Class i must mean the same person in both: unknown identities (a bare checkpoint file) count as other ones.
    keep_classifier = source_identities == identities
    wanted = {name: tensor for name, tensor in weights.items()
              if not name.startswith("gates.") and (keep_classifier or not name.startswith("fc."))}
    mismatched = [f"{name} {tuple(tensor.shape)} vs {tuple(own[name].shape)}" for name, tensor in wanted.items()
                  if name in own and own[name].shape != tensor.shape]
    missing = [name for name in wanted if name not in own]
    if mismatched or missing:
        raise FacegraphError(f"model.init_from {source}: its weights do not fit this model: "
                             + "; ".join(mismatched + [f"{name} absent here" for name in missing]))
    if not keep_classifier:
        why = "other identities" if source_identities is not None else "a checkpoint whose identities are unknown"
        logger.info("model.init_from %s: %s, so the classifier starts fresh", source, why)
    model.load_state_dict(wanted, strict=False)
    return sorted(wanted)


def distillation_teacher(source: str | Path, identities: list[str], device: torch.device) -> GatedResNet:
    """The fused inference graph of the run a model is warm-started from, to distil its logits (loss.distill_weight):
    it must be a run directory trained on the same identities in the same order, since its logits are compared class
    by class."""
    if not Path(source).is_dir():
        raise FacegraphError(f"loss.distill_weight needs model.init_from to be a run directory (its config builds the "
                             f"teacher), got {source}")
    teacher = load_trained(source)
    if teacher.dataset.get("identities") != identities:
        raise FacegraphError(f"loss.distill_weight: {source} was trained on other identities than this dataset's, so "
                             f"its logits cannot teach this classifier")
    return teacher.inference_model.to(device)
