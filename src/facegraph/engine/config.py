"""Run configuration: TOML presets -> validated dataclasses, with `--set key=value` overrides.

Configuration is data. Every key has a type and a default; an unknown key, a wrong type or an invalid value is a
ConfigError that names the key (and the file it came from).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facegraph.errors import ConfigError
from facegraph.graphs import MASK_SCHEMES
from facegraph.models import ARCHS, PRECISIONS

VARIANTS = ("resnet", "aig", "iig")
LR_SCHEDULES = ("cosine", "step", "constant")


@dataclass
class ModelConfig:
    arch: str = "resnet50"
    width: float = 1.0
    image_size: int = 128  # must match the prepared dataset
    variant: str = "resnet"  # resnet: no gates; aig: target-rate loss; iig: IIG loss (and optionally target loss)
    target_rate: float = 0.5  # t for the gated blocks
    always_on_first: int = 7  # blocks at the start without a gate (paper: 7 of ResNet-101's 33)
    always_on_last: int = 3  # blocks at the end without a gate (paper: 3)
    gate_downsampling: bool = True  # False keeps each stage's first (strided) block always on
    gate_hidden: int = 16
    initial_open_rate: float = 0.85


@dataclass
class GumbelConfig:
    temperature: float = 1.0  # at the first epoch
    final_temperature: float | None = None  # annealed linearly to this by the last epoch; None keeps it constant


@dataclass
class IIGFeatureConfig:
    name: str = ""  # a dataset feature, e.g. "gender"
    scheme: str = "alternate"  # alternate | blocks | explicit (see facegraph.graphs.masks)
    block_size: int | None = None  # blocks: gates per label
    start: int = 0  # blocks: first gate
    gates: list[int] | None = None  # alternate: the gates to alternate over (default: all)
    label_gates: dict[str, list[int]] | None = None  # explicit: label -> gates


@dataclass
class LossConfig:
    target_weight: float = 1.0  # eq. 2 weight (eq. 3 uses 1)
    target_warmup_epochs: int = 0  # targets fall linearly from 1 to t over these first epochs (0: t from the start)
    iig_weight: float = 0.0  # eq. 4 weight
    iig_balanced: bool = False  # weigh each label equally in eq. 4 (against collapse onto a majority label's mask)
    iig_features: list[IIGFeatureConfig] = field(default_factory=list)


@dataclass
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 0.0
    step_milestones: list[int] = field(default_factory=list)  # epochs at which step decays
    step_gamma: float = 0.1


@dataclass
class DataConfig:
    augment: bool = True  # random flip + small translation on the training split
    val_split: str = "val"  # chooses the best checkpoint; a dataset without it keeps the last epoch


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (CUDA only)
    channels_last: bool = False
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default


@dataclass
class RunConfig:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    gumbel: GumbelConfig = field(default_factory=GumbelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Return `value` converted to `annotation` (int -> float allowed), or raise naming the key."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return _from_dict(annotation, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        _, item = typing.get_args(annotation)
        return {str(k): _check_type(v, item, f"{key}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float) and isinstance(value, bool) or not isinstance(value, annotation):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def _from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in [{prefix}]" if prefix else ""
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}{where}; "
                          f"known: {', '.join(sorted(names))}")
    values = {name: _check_type(value, hints[name], f"{prefix}.{name}" if prefix else name)
              for name, value in data.items()}
    return cls(**values)


def _parse_override(assignment: str) -> tuple[list[str], Any]:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word is a string: --set model.arch=resnet18
    return key.strip().split("."), value


def _apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part} is not a table")
    node[path[-1]] = value


def validate(config: RunConfig) -> RunConfig:
    """Check values that types alone cannot."""
    checks = [
        (config.model.arch in ARCHS, f"model.arch: unknown architecture {config.model.arch!r}; choose one of {sorted(ARCHS)}"),
        (config.model.variant in VARIANTS, f"model.variant must be one of {VARIANTS}, got {config.model.variant!r}"),
        (0.0 <= config.model.target_rate <= 1.0, f"model.target_rate must lie in [0, 1], got {config.model.target_rate}"),
        (config.model.width > 0, f"model.width must be > 0, got {config.model.width}"),
        (config.model.image_size >= 32, f"model.image_size must be >= 32, got {config.model.image_size}"),
        (config.train.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}, got {config.train.precision!r}"),
        (config.train.epochs >= 1, f"train.epochs must be >= 1, got {config.train.epochs}"),
        (config.train.batch_size >= 2, f"train.batch_size must be >= 2 (BatchNorm), got {config.train.batch_size}"),
        (config.train.device in ("auto", "cpu", "cuda"), f"train.device must be auto, cpu or cuda, got {config.train.device!r}"),
        (config.optim.schedule in LR_SCHEDULES, f"optim.schedule must be one of {LR_SCHEDULES}, got {config.optim.schedule!r}"),
        (config.optim.lr > 0, f"optim.lr must be > 0, got {config.optim.lr}"),
        (config.gumbel.temperature > 0 and (config.gumbel.final_temperature or 1.0) > 0, "gumbel temperatures must be > 0"),
        (config.model.variant != "iig" or bool(config.loss.iig_features),
         "model.variant = 'iig' needs at least one [[loss.iig_features]] entry"),
        (config.model.variant != "iig" or config.loss.iig_weight > 0, "model.variant = 'iig' needs loss.iig_weight > 0"),
    ]
    for feature in config.loss.iig_features:
        checks.append((feature.scheme in MASK_SCHEMES,
                       f"loss.iig_features {feature.name!r}: scheme must be one of {MASK_SCHEMES}, got {feature.scheme!r}"))
        checks.append((bool(feature.name), "loss.iig_features: every feature needs a name"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML preset (or start from the defaults), apply `key=value` overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: invalid TOML: {error}") from None
    for assignment in overrides or []:
        _apply_override(data, *_parse_override(assignment))
    try:
        return validate(_from_dict(RunConfig, data))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path is not None else str(error)) from None


def config_from_dict(data: dict) -> RunConfig:
    """Rebuild a RunConfig from `config.json` of a run directory."""
    return validate(_from_dict(RunConfig, data))
