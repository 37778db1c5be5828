"""The run directory (docs/run-directory.md): building a run's model and masks from its config, writing and reading
the files that train, evaluate, table2, report and predict share."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facegraph.engine.checkpoint import atomic_write_bytes, load_checkpoint
from facegraph.engine.config import RunConfig, config_from_dict
from facegraph.errors import ConfigError, DataError, FacegraphError
from facegraph.flops import CostTable, cost_table
from facegraph.graphs import FeatureMasks, build_feature_masks, check_disjoint_features, middle_gated_schedule
from facegraph.models import GatedResNet, build_model, num_blocks, stage_first_blocks

CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"
DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.jsonl"
DONE_FILE = "done.json"
CHECKPOINTS = "checkpoints"
EVAL_DIR = "eval"


def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path) -> Any:
    """A JSON file of a run directory; DataError naming the file when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise DataError(f"{path} is not valid JSON ({error})") from None


def target_rates(config: RunConfig) -> list[float] | None:
    """The per-block schedule of a config: None (no gates) for the resnet variant.

    Without `gate_downsampling`, each stage's first block stays on: closed, such a block shrinks to its strided 1x1
    projection (on LFW at CPU scale this cost 5 points of top-1 for 2 % of the MACs).
    """
    if config.model.variant == "resnet":
        return None
    rates = middle_gated_schedule(num_blocks(config.model.arch), config.model.target_rate,
                                  config.model.always_on_first, config.model.always_on_last)
    if not config.model.gate_downsampling:
        for block in stage_first_blocks(config.model.arch)[1:]:
            rates[block] = 1.0
    return rates


def model_from_config(config: RunConfig, num_classes: int) -> GatedResNet:
    model = config.model
    return build_model(model.arch, num_classes, width=model.width, target_rates=target_rates(config),
                       gate_hidden=model.gate_hidden, initial_open_rate=model.initial_open_rate,
                       temperature=config.gumbel.temperature)


def iig_masks(config: RunConfig, num_gates: int, features: dict[str, list[str]]) -> list[FeatureMasks]:
    """The IIG masks of the configured features, validated (disjoint within and across features)."""
    masks = []
    for feature in config.loss.iig_features:
        if feature.name not in features:
            raise ConfigError(f"loss.iig_features: the dataset has no feature {feature.name!r} "
                              f"(it has: {', '.join(features) or 'none'})")
        masks.append(build_feature_masks(
            feature.name, features[feature.name], num_gates, feature.scheme, block_size=feature.block_size,
            start=feature.start, gates=feature.gates, label_gates=feature.label_gates,
        ))
    check_disjoint_features(masks)
    return masks


def _git_revision() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment(world_size: int, device: str) -> dict[str, Any]:
    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "host": socket.gethostname(), "git_revision": _git_revision(), "argv": sys.argv,
        "world_size": world_size, "device": device, "threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclass
class RunInfo:
    """What a finished (or running) run directory says about itself."""

    path: Path
    config: RunConfig
    dataset: dict[str, Any]  # dataset.json
    feature_masks: dict[str, FeatureMasks] = field(default_factory=dict)
    cost_table: CostTable | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINTS


def read_run(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir)
    if not (path / CONFIG_FILE).exists():
        raise FacegraphError(f"{path} is not a run directory (no {CONFIG_FILE}); create one with `facegraph train`")
    config = config_from_dict(read_json(path / CONFIG_FILE))
    return RunInfo(path, config, read_json(path / DATASET_FILE))


def load_trained_model(run_dir: str | Path, checkpoint: str = "best") -> tuple[GatedResNet, RunInfo]:
    """The run's model in evaluation mode with its `best` (or `last`) weights, plus its masks and cost table."""
    info = read_run(run_dir)
    checkpoint_path = info.checkpoint_dir / f"{checkpoint}.pt"
    if not checkpoint_path.exists() and checkpoint == "best":
        checkpoint_path = info.checkpoint_dir / "last.pt"
    state = load_checkpoint(checkpoint_path)
    model = model_from_config(info.config, len(info.dataset["identities"]))
    model.load_state_dict(state["model"])
    model.eval()
    info.feature_masks = {m.feature: m for m in iig_masks(info.config, model.num_gates, info.dataset["features"])}
    info.cost_table = cost_table(model, info.dataset["image_size"])
    return model, info
