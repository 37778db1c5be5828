"""A run directory's outputs as the report needs them, read through facegraph.rundir (the one reader).

Analysis reads what train and evaluate wrote; it never rebuilds a model. Every malformed file is a DataError that
names the file (and line).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegraph import paper
from facegraph.config import config_from_dict
from facegraph.errors import ConfigError, DataError, FacegraphError
from facegraph.rundir import ImageRecords, RunDir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecords:
    """What the report needs from one run directory."""

    path: Path
    config: dict[str, Any]
    dataset: dict[str, Any]
    epochs: list[dict[str, Any]]  # metrics.jsonl
    split: str
    evaluation: dict[str, Any] | None  # eval/<split>.json, None before `facegraph evaluate`
    images: ImageRecords | None  # eval/<split>-images.csv

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def num_gates(self) -> int:
        if self.evaluation is not None:
            return len(self.evaluation.get("gated_blocks", []))
        return self.images.num_gates if self.images is not None else 0

    @property
    def features(self) -> dict[str, list[str]]:
        return dict(self.dataset.get("features", {}))

    @property
    def identity_names(self) -> list[str]:
        return list(self.dataset.get("identities", []))

    @property
    def label(self) -> str:
        """The paper's name for the run's model, with its backbone; the folder name for a config that does not
        describe a model."""
        if "model" not in self.config:
            return self.name
        try:
            return paper.model_label(config_from_dict(self.config), with_backbone=True)
        except ConfigError:
            return self.name


def read_run_records(run_dir: str | Path, split: str = "test") -> RunRecords:
    """A run directory's config, dataset summary, metrics and (when evaluated) its `split` results."""
    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise FacegraphError(f"run directory {run.path} does not exist")
    if not run.config_path.is_file() and not run.metrics_path.is_file():
        raise FacegraphError(f"{run.path} is not a run directory (neither {run.config_path.name} nor "
                             f"{run.metrics_path.name}); create one with `facegraph train`")
    config = run.config_dict() if run.config_path.is_file() else {}
    dataset = run.dataset() if run.dataset_path.is_file() else {}
    evaluation = run.evaluation(split)
    images = run.image_records(split, dataset.get("features", {}))
    if evaluation is None:
        logger.warning("%s: no eval/%s.json; run `facegraph evaluate %s --split %s` for its table row and figures",
                       run.path, split, run.path, split)
    if images is not None and evaluation is not None and images.num_gates != len(evaluation.get("gated_blocks", [])):
        raise DataError(f"{run.image_records_path(split)}: rows have {images.num_gates} gates but "
                        f"{run.evaluation_path(split)} lists {len(evaluation.get('gated_blocks', []))} gated blocks")
    return RunRecords(run.path, config, dataset, run.metrics(), split, evaluation, images)
