"""Reading a run directory's outputs (docs/run-directory.md) into arrays the figures are computed from.

Analysis reads what train and evaluate wrote; it never rebuilds a model. Every malformed file is a DataError that
names the file (and line).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegraph.engine import table2
from facegraph.engine.config import config_from_dict
from facegraph.engine.runs import read_json
from facegraph.errors import ConfigError, DataError, FacegraphError

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
IMAGE_COLUMNS = ("sample", "path", "identity", "name", "predicted", "correct", "top5_correct", "confidence",
                 "gmacs", "active_gates", "gates")


@dataclass(frozen=True)
class ImageRecords:
    """eval/<split>-images.csv as columns: one entry per test image."""

    path: list[str]  # relative to the dataset root
    identity: np.ndarray  # (N,) true identity id
    name: list[str]  # true identity name
    predicted: np.ndarray  # (N,) predicted identity id
    correct: np.ndarray  # (N,) bool, top-1
    confidence: np.ndarray  # (N,) softmax probability of the prediction
    gmacs: np.ndarray  # (N,)
    active_gates: np.ndarray  # (N,) int
    gates: np.ndarray  # (N, k) 0/1 per gated block, in gate order
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> (N,) label code, -1 = unknown
    readout: dict[str, list[str]] = field(default_factory=dict)  # feature -> label read out from the gates (eq. 5)

    def __len__(self) -> int:
        return len(self.path)

    @property
    def num_gates(self) -> int:
        return self.gates.shape[1]


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
        return model_label(self.config, self.name)


def model_label(config: dict[str, Any], fallback: str) -> str:
    """The paper's name for a run's model, with its backbone: ConvNet-AIG [t=0.4] ResNet-101, ...; `fallback` for a
    config that does not describe a model."""
    if "model" not in config:
        return fallback
    try:
        return table2.model_label(config_from_dict(config), with_backbone=True)
    except ConfigError:
        return fallback


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl: one object per finished epoch, in file order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    epochs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            epoch = json.loads(line)
        except ValueError as error:
            raise DataError(f"{path}, line {number}: not valid JSON ({error})") from None
        if not isinstance(epoch, dict) or "epoch" not in epoch:
            raise DataError(f"{path}, line {number}: expected an object with an 'epoch' key")
        epochs.append(epoch)
    return epochs


def _parse_field(path: Path, line: int, column: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise DataError(f"{path}, line {line}, column {column}: value {text!r} is not a{'n' if kind is int else ''} {kind.__name__}") from None


def read_image_records(path: Path, features: dict[str, list[str]]) -> ImageRecords:
    """eval/<split>-images.csv; feature columns are coded against the dataset's label words (`features`)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            rows = list(enumerate(reader, start=2))
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except csv.Error as error:
        raise DataError(f"{path}: malformed CSV ({error})") from None
    missing = [column for column in IMAGE_COLUMNS if column not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {', '.join(missing)}")
    feature_columns = [feature for feature in features if feature in header]
    readout_columns = [column.removeprefix("readout_") for column in header if column.startswith("readout_")]
    positions = {feature: {word: code for code, word in enumerate(words)} for feature, words in features.items()}
    columns: dict[str, list] = {name: [] for name in IMAGE_COLUMNS}
    labels: dict[str, list[int]] = {feature: [] for feature in feature_columns}
    readout: dict[str, list[str]] = {feature: [] for feature in readout_columns}
    gate_rows: list[list[int]] = []
    num_gates = None
    for line, row in rows:
        if None in row or any(row[column] is None for column in header):
            raise DataError(f"{path}, line {line}: {len(header)} fields expected")
        for column, kind in (("identity", int), ("predicted", int), ("correct", int), ("confidence", float),
                             ("gmacs", float), ("active_gates", int)):
            columns[column].append(_parse_field(path, line, column, row[column], kind))
        columns["path"].append(row["path"])
        columns["name"].append(row["name"])
        gates = row["gates"]
        if num_gates is None:
            num_gates = len(gates)
        if len(gates) != num_gates or set(gates) - {"0", "1"}:
            raise DataError(f"{path}, line {line}, column gates: {gates!r} is not a string of {num_gates} 0/1 characters")
        gate_rows.append([int(c) for c in gates])
        for feature in feature_columns:
            word = row[feature]
            if word != UNKNOWN and word not in positions[feature]:
                raise DataError(f"{path}, line {line}, column {feature}: label {word!r} is not one of "
                                f"{', '.join(features[feature])} (or {UNKNOWN})")
            labels[feature].append(positions[feature].get(word, -1))
        for feature in readout_columns:
            readout[feature].append(row[f"readout_{feature}"])
    return ImageRecords(
        path=columns["path"],
        identity=np.array(columns["identity"], dtype=np.int64),
        name=columns["name"],
        predicted=np.array(columns["predicted"], dtype=np.int64),
        correct=np.array(columns["correct"], dtype=bool),
        confidence=np.array(columns["confidence"], dtype=np.float64),
        gmacs=np.array(columns["gmacs"], dtype=np.float64),
        active_gates=np.array(columns["active_gates"], dtype=np.int64),
        gates=np.array(gate_rows, dtype=np.uint8).reshape(len(gate_rows), num_gates or 0),
        labels={feature: np.array(codes, dtype=np.int64) for feature, codes in labels.items()},
        readout=readout,
    )


def read_run_records(run_dir: str | Path, split: str = "test") -> RunRecords:
    """A run directory's config, dataset summary, metrics and (when evaluated) its `split` results."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FacegraphError(f"run directory {path} does not exist")
    config_path, metrics_path = path / "config.json", path / "metrics.jsonl"
    if not config_path.is_file() and not metrics_path.is_file():
        raise FacegraphError(f"{path} is not a run directory (neither config.json nor metrics.jsonl); create one with `facegraph train`")
    config = read_json(config_path) if config_path.is_file() else {}
    dataset_path = path / "dataset.json"
    dataset = read_json(dataset_path) if dataset_path.is_file() else {}
    epochs = read_metrics(metrics_path) if metrics_path.is_file() else []
    summary_path, images_path = path / "eval" / f"{split}.json", path / "eval" / f"{split}-images.csv"
    evaluation = read_json(summary_path) if summary_path.is_file() else None
    images = read_image_records(images_path, dataset.get("features", {})) if images_path.is_file() else None
    if evaluation is None:
        logger.warning("%s: no eval/%s.json; run `facegraph evaluate %s --split %s` for its table row and figures", path, split, path, split)
    if images is not None and evaluation is not None and images.num_gates != len(evaluation.get("gated_blocks", [])):
        raise DataError(f"{images_path}: rows have {images.num_gates} gates but {summary_path} lists "
                        f"{len(evaluation.get('gated_blocks', []))} gated blocks")
    return RunRecords(path, config, dataset, epochs, split, evaluation, images)
