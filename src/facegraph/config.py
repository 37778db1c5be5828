"""Run configuration: TOML presets -> validated dataclasses, with `--set key=value` overrides.

Configuration is data. Every key has a type and a default; an unknown key, a wrong type or an invalid value is a
ConfigError that names the key and where it came from (the file, or the `--set` argument).

Presets ship inside the package (`facegraph/presets/<folder>/<name>.toml`, read with importlib.resources). A preset
may start with `inherit = "base"`: the named file of the same folder is read first and this one's keys are merged
over it (tables merge key by key, anything else is replaced), as arcface_torch's per-run configs extend its base. A
file of one's own may also inherit a shipped preset (`inherit = "cpu/aig-t0.5"`) and state only what differs.
table2's warm start loads each row on `finetune.toml` instead of `base.toml` (`load_config(..., parent="finetune")`).
`config_to_toml` writes a resolved configuration back as a TOML file that loads to the same configuration.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from facegraph.errors import ConfigError
from facegraph.graphs import MASK_SCHEMES
from facegraph.graphs.margins import MARGIN_KINDS
from facegraph.models import ARCHS, PRECISIONS

VARIANTS = ("resnet", "aig", "iig")
LR_SCHEDULES = ("cosine", "step", "constant")
PRESET_SUFFIX = ".toml"
INHERIT_KEY = "inherit"
# Files that presets inherit from, not presets of their own: the shared keys, and the fine-tuning recipe that table2's
# warm start puts between them and each row. A preset's own `[finetune]` table applies only when it is loaded on it.
FINETUNE = "finetune"
PARENT_FILES = ("base", FINETUNE)


@dataclass
class ModelConfig:
    arch: str = "resnet50"
    width: float = 1.0
    image_size: int = 0  # 0: the prepared dataset's image size; any other value must match it
    variant: str = "resnet"  # resnet: no gates; aig: target-rate loss; iig: IIG loss
    gate_hidden: int = 16
    initial_open_rate: float = 0.85
    # Warm start (ConvNet-AIG's --pretrained): a run directory (its best.pt) or a checkpoint file whose backbone, and
    # classifier when the identities match, initialise this model; gates start fresh. "" trains from scratch.
    init_from: str = ""


@dataclass
class GatesConfig:
    """Which residual blocks carry a gate (variants aig and iig; a resnet has none): all but the first
    `always_on_first` and last `always_on_last` blocks, as in the paper (7 and 3 of ResNet-101's 33)."""

    always_on_first: int = 7
    always_on_last: int = 3
    downsampling: bool = True  # False keeps each stage's first (strided) block always on


@dataclass
class GumbelConfig:
    temperature: float = 1.0  # at the first epoch
    final_temperature: float | None = None  # annealed linearly to this by the last epoch; None keeps it constant
    # Scale of the sampled noise: 1 samples exactly softmax(logits). Annealed towards 0 (final_noise), training
    # decisions approach the deterministic ones of inference, so the target loss (eq. 2) meets the rate inference runs.
    noise: float = 1.0
    final_noise: float | None = None


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
    target_rate: float = 0.5  # t of eq. 2 for every gated block
    target_weight: float = 1.0  # eq. 2 weight (eq. 3 uses 1); iig: on every gate when > 0, else unmasked_target_weight
    target_warmup_epochs: int = 0  # targets fall linearly from 1 to t over these first epochs (0: t from the start)
    iig_weight: float = 0.0  # eq. 4 weight; iig only
    iig_balanced: bool = False  # weigh each label equally in eq. 4 (against collapse onto a majority label's mask)
    # Margin softmax for verification: "arcface" or "cosface" trains a cosine classifier with that margin and scale
    # (facegraph.graphs.margins); "none" is plain softmax cross-entropy on a linear classifier (the paper's).
    margin: str = "none"
    margin_m: float = 0.5
    margin_scale: float = 30.0
    # iig: the target loss (eq. 2, rate target_rate) on the gates no IIG mask covers, so that no gate is left under
    # no loss at all (the paper's gender + age masks cover 22 of its 23 gates).
    unmasked_target_weight: float = 1.0
    # Distillation from the dense run a gated model is warm-started from (model.init_from, a run directory): the
    # student also matches the teacher's softened logits (graphs.losses.distillation_loss); 0 turns it off.
    distill_weight: float = 0.0
    distill_temperature: float = 4.0
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
    gate_lr_factor: float = 1.0  # the gates' learning rate is lr x this (a warm-started backbone may want the gates faster)


@dataclass
class DataConfig:
    augment: bool = True  # random flip + small translation on the training split
    val_split: str = "val"  # chooses the best checkpoint
    # A dataset without `val_split`: this fraction of each person's training images (seeded) becomes the validation
    # part instead, so the checkpoint is never chosen on test; 0 keeps the last epoch.
    val_from_train: float = 0.1
    # k-fold cross-validation (0: the prepared splits): every photo is re-dealt per person into `folds` folds, fold
    # `fold` is the test split, the rest train (val then comes from val_from_train). `table2 --folds k` runs seed s on
    # fold s, so seeds pool into a cross-validation in which every photo is tested once.
    folds: int = 0
    fold: int = 0
    # Which dealing of the photos into folds (0: the one every run before this key used); another seed repeats the
    # cross-validation on another partition of the same photos (`table2 --fold-seed`).
    fold_seed: int = 0


@dataclass
class TrainConfig:
    epochs: int = 10
    # At least this many optimizer steps: on a small dataset the epochs grow to reach it (0: exactly `epochs`).
    min_steps: int = 0
    # best.pt is chosen on val among the epochs after this fraction of training (0: all). A gated model's early epochs
    # run more blocks than its target and can win on val top-1 at a cost the finished model does not have.
    select_from: float = 0.0
    # A model trained toward target rates (the target loss on every gate) takes best.pt only from the epochs whose mean
    # validation open rate is at most the mean target rate plus this, when any is (else the lowest open rate); None:
    # any epoch, by val top-1 alone (engine/metrics.checkpoint_rank).
    select_rate_slack: float | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (CUDA only)
    channels_last: bool = False
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    tensorboard: bool = False  # also write TensorBoard event files (the optional extra facegraph[tensorboard])


@dataclass
class RunConfig:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
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


def _parse_override(assignment: str, option: str = "--set") -> tuple[list[str], Any]:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} expects key=value, got {assignment!r}")
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word is a string: --set model.arch=resnet18
    return key.strip().split("."), value


def _check_override_key(path: list[str], option: str = "--set") -> None:
    """An unknown `--set` key is reported against the option that gave it, not the config file."""
    cls: Any = RunConfig
    for depth, part in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{option} {'.'.join(path)}: {'.'.join(path[:depth])} is not a table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            where = f" in [{'.'.join(path[:depth])}]" if depth else ""
            raise ConfigError(f"{option} {'.'.join(path)}: unknown key {part!r}{where}; "
                              f"known: {', '.join(sorted(fields))}")
        cls = typing.get_type_hints(cls)[part]


def check_overrides(assignments: list[str], option: str) -> None:
    """Check the form and keys of `key=value` assignments before any run starts; errors name `option` (a command's
    flag other than --set, e.g. table2's --finetune-set). Values are checked when a config is loaded."""
    for assignment in assignments:
        _check_override_key(_parse_override(assignment, option)[0], option)


def _apply_override(data: dict, path: list[str], value: Any) -> None:
    _check_override_key(path)
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _bounded(key: str, value: float | None, low: float, *, above: bool = False,
             high: float | None = None) -> tuple[bool, str]:
    """A check that `value` is finite and >= `low` (> `low` when `above`, and <= `high` if given); None passes, for
    optional keys. NaN fails any comparison, but inf passes `> 0` and only breaks the run after it has been written."""
    ok = value is None or (math.isfinite(value) and (value > low if above else value >= low)
                           and (high is None or value <= high))
    wanted = f"{'>' if above else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")
    return ok, f"{key} must be a finite number {wanted}, got {value}"


def validate(config: RunConfig) -> RunConfig:
    """Check values that types alone cannot, so that a run fails before it writes anything."""
    model, loss, train, gumbel, optim = config.model, config.loss, config.train, config.gumbel, config.optim
    checks = [
        (model.arch in ARCHS, f"model.arch: unknown architecture {model.arch!r}; choose one of {sorted(ARCHS)}"),
        (model.variant in VARIANTS, f"model.variant must be one of {VARIANTS}, got {model.variant!r}"),
        _bounded("model.width", model.width, 0, above=True),
        (model.image_size == 0 or model.image_size >= 32,
         f"model.image_size must be 0 (the dataset's) or >= 32, got {model.image_size}"),
        (model.gate_hidden >= 1, f"model.gate_hidden must be >= 1, got {model.gate_hidden}"),
        (0.0 < model.initial_open_rate < 1.0, f"model.initial_open_rate must lie in (0, 1), got {model.initial_open_rate}"),
        (config.gates.always_on_first >= 0 and config.gates.always_on_last >= 0,
         "gates.always_on_first and gates.always_on_last must be >= 0"),
        (0.0 < loss.target_rate <= 1.0, f"loss.target_rate must lie in (0, 1], got {loss.target_rate}"),
        _bounded("loss.target_weight", loss.target_weight, 0),
        _bounded("loss.iig_weight", loss.iig_weight, 0),
        _bounded("loss.unmasked_target_weight", loss.unmasked_target_weight, 0),
        (loss.margin in ("none", *MARGIN_KINDS), f"loss.margin must be none, arcface or cosface, got {loss.margin!r}"),
        _bounded("loss.margin_m", loss.margin_m, 0),
        _bounded("loss.margin_scale", loss.margin_scale, 0, above=True),
        _bounded("loss.distill_weight", loss.distill_weight, 0),
        _bounded("loss.distill_temperature", loss.distill_temperature, 0, above=True),
        (loss.distill_weight == 0 or bool(model.init_from),
         "loss.distill_weight > 0 distils from the run in model.init_from (or train --init-from): give one"),
        (loss.target_warmup_epochs >= 0, f"loss.target_warmup_epochs must be >= 0, got {loss.target_warmup_epochs}"),
        (train.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}, got {train.precision!r}"),
        (train.epochs >= 1, f"train.epochs must be >= 1, got {train.epochs}"),
        (train.batch_size >= 2, f"train.batch_size must be >= 2 (BatchNorm), got {train.batch_size}"),
        (train.eval_batch_size >= 1, f"train.eval_batch_size must be >= 1, got {train.eval_batch_size}"),
        (train.threads >= 0, f"train.threads must be >= 0 (0 keeps torch's default), got {train.threads}"),
        (train.seed >= 0, f"train.seed must be >= 0, got {train.seed}"),
        (train.min_steps >= 0, f"train.min_steps must be >= 0, got {train.min_steps}"),
        (0.0 <= train.select_from < 1.0, f"train.select_from must be in [0, 1), got {train.select_from}"),
        _bounded("train.select_rate_slack", train.select_rate_slack, 0),
        _bounded("optim.gate_lr_factor", optim.gate_lr_factor, 0, above=True),
        (train.device in ("auto", "cpu", "cuda"), f"train.device must be auto, cpu or cuda, got {train.device!r}"),
        (optim.schedule in LR_SCHEDULES, f"optim.schedule must be one of {LR_SCHEDULES}, got {optim.schedule!r}"),
        _bounded("optim.lr", optim.lr, 0, above=True),
        _bounded("optim.momentum", optim.momentum, 0),
        (not optim.momentum >= 1, f"optim.momentum must be < 1 (the velocity would never decay), got {optim.momentum}"),
        _bounded("optim.weight_decay", optim.weight_decay, 0),
        # torch's SGD refuses Nesterov momentum without momentum.
        (not optim.nesterov or optim.momentum > 0,
         f"optim.nesterov = true needs optim.momentum > 0, got {optim.momentum}"),
        _bounded("optim.warmup_epochs", optim.warmup_epochs, 0),
        # A step schedule decays: a factor above 1 would grow the learning rate at every milestone.
        _bounded("optim.step_gamma", optim.step_gamma, 0, above=True, high=1),
        (all(m >= 1 for m in optim.step_milestones),
         f"optim.step_milestones must be epochs >= 1, got {optim.step_milestones}"),
        _bounded("gumbel.temperature", gumbel.temperature, 0, above=True),
        _bounded("gumbel.final_temperature", gumbel.final_temperature, 0, above=True),
        _bounded("gumbel.noise", gumbel.noise, 0),
        _bounded("gumbel.final_noise", gumbel.final_noise, 0),
        (0.0 <= config.data.val_from_train < 1.0,
         f"data.val_from_train must lie in [0, 1), got {config.data.val_from_train}"),
        (config.data.folds == 0 or (config.data.folds >= 2 and 0 <= config.data.fold < config.data.folds),
         f"data.folds must be 0 (the prepared splits) or >= 2 with 0 <= data.fold < data.folds, got fold "
         f"{config.data.fold} of {config.data.folds}"),
        (config.data.fold_seed >= 0, f"data.fold_seed must be >= 0, got {config.data.fold_seed}"),
        (config.data.folds == 0 or config.data.val_from_train > 0,
         "data.folds re-splits into train and test only: data.val_from_train must be > 0 to choose the checkpoint"),
        (config.data.val_split != "test",
         "data.val_split must not be 'test': it chooses the checkpoint, which must not see the test split"),
        (model.variant == "resnet" or loss.target_rate < 1.0,
         f"model.variant = {model.variant!r} has gates: loss.target_rate must be < 1, got {loss.target_rate}"),
        (model.variant != "iig" or bool(loss.iig_features),
         "model.variant = 'iig' needs at least one [[loss.iig_features]] entry"),
        (model.variant != "iig" or loss.iig_weight > 0, "model.variant = 'iig' needs loss.iig_weight > 0"),
    ]
    for feature in loss.iig_features:
        checks.append((bool(feature.name), "loss.iig_features: every feature needs a name"))
        checks.append((feature.scheme in MASK_SCHEMES,
                       f"loss.iig_features {feature.name!r}: scheme must be one of {MASK_SCHEMES}, got {feature.scheme!r}"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config


def _merge(base: dict, delta: dict) -> dict:
    merged = dict(base)
    for key, value in delta.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _read_toml(source: Path | resources.abc.Traversable, chain: tuple[str, ...] = (),
               parent_instead: str | None = None) -> dict:
    """A TOML file with its `inherit` chain resolved (the parent is a file of the same folder); `parent_instead`
    replaces this file's own parent."""
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {source}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: {error}") from None
    parent = data.pop(INHERIT_KEY, None)
    if parent_instead is not None:
        if parent is None:
            raise ConfigError(f"{source} inherits from no file, so it cannot inherit from {parent_instead!r} instead")
        parent = parent_instead
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{source}: {INHERIT_KEY} must be a file name, got {parent!r}")
    if str(source) in chain:
        raise ConfigError(f"{source}: {INHERIT_KEY} forms a cycle ({' -> '.join(chain)})")
    parent_file = source.parent / (parent if parent.endswith(PRESET_SUFFIX) else parent + PRESET_SUFFIX)
    if not parent_file.is_file():
        *folders, name = parent.removesuffix(PRESET_SUFFIX).split("/")
        shipped = presets_root().joinpath(*folders, name + PRESET_SUFFIX)
        if not (folders and shipped.is_file()):
            raise ConfigError(f"{source}: {INHERIT_KEY} = {parent!r} is neither a file of its folder ({parent_file}) "
                              f"nor a preset (`facegraph presets`: e.g. cpu/aig-t0.5)")
        parent_file = shipped
    return _merge(_read_toml(parent_file, (*chain, str(source))), data)


def presets_root() -> resources.abc.Traversable:
    return resources.files("facegraph") / "presets"


def list_presets() -> dict[str, str]:
    """Preset name (`cpu/aig-t0.5`) -> its first comment line; base files are not presets of their own."""
    found = {}
    for folder in sorted(presets_root().iterdir(), key=lambda p: p.name):
        if not folder.is_dir():
            continue
        for item in sorted(folder.iterdir(), key=lambda p: p.name):
            if item.name.endswith(PRESET_SUFFIX) and item.name.removesuffix(PRESET_SUFFIX) not in PARENT_FILES:
                first = item.read_text(encoding="utf-8").splitlines()[:1]
                summary = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
                found[f"{folder.name}/{item.name.removesuffix(PRESET_SUFFIX)}"] = summary
    return found


def resolve_config_source(name_or_path: str | Path) -> Path | resources.abc.Traversable:
    """A TOML file on disk, or a preset shipped with the package (`cpu/aig-t0.5`, with or without .toml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    *folders, name = str(name_or_path).removesuffix(PRESET_SUFFIX).split("/")
    preset = presets_root().joinpath(*folders, name + PRESET_SUFFIX)
    if folders and preset.is_file():
        return preset
    presets = list_presets()
    raise ConfigError(f"config {name_or_path} is neither a file nor a preset; presets: {', '.join(presets)}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                parent: str | None = None) -> RunConfig:
    """Read a TOML file or preset (or start from the defaults), apply `key=value` overrides, validate.

    `parent` makes the file inherit from another file of its folder than its own `inherit` names: table2 puts a
    warm-started row on `finetune.toml`, and then merges the row's own `[finetune]` table over it, which holds what the
    row changes only when fine-tuned (an IIG row's stronger IIG loss)."""
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of 'key=value' strings, got the string {overrides!r}: "
                        f"write [{overrides!r}]")
    data: dict = {}
    source = None
    if path is not None:
        source = resolve_config_source(path)
        data = _read_toml(source, parent_instead=parent)
        finetune = data.pop(FINETUNE) if isinstance(data.get(FINETUNE), dict) else {}
        if parent == FINETUNE:
            data = _merge(data, finetune)
        try:
            _from_dict(RunConfig, data)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    for assignment in overrides or []:
        _apply_override(data, *_parse_override(assignment))
    try:
        return validate(_from_dict(RunConfig, data))
    except ConfigError as error:
        where = f"{path}{' with --set ' + ' '.join(overrides) if overrides else ''}" if path is not None else \
            ("--set " + " ".join(overrides) if overrides else "")
        raise ConfigError(f"{where}: {error}" if where else str(error)) from None


def config_to_toml(data: dict[str, Any]) -> str:
    """A configuration dict (`RunConfig.to_dict()`) as a TOML document that `load_config` reads back to the same
    configuration: tables for the sections, arrays of tables for lists of tables (`[[loss.iig_features]]`). TOML has no
    null, so a key whose value is None (not set) is written as a comment and loads as its default, None."""
    lines: list[str] = []
    _toml_table(data, "", lines)
    return "\n".join(lines).strip() + "\n"


def _toml_table(data: dict[str, Any], prefix: str, lines: list[str]) -> None:
    tables = []
    for key, value in data.items():
        if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            tables.append((key, value))
        elif value is None:
            lines.append(f"# {key}: not set")
        else:
            lines.append(f"{key} = {_toml_value(value, prefix + key)}")
    for key, value in tables:
        for item in value if isinstance(value, list) else [value]:
            lines += ["", f"[[{prefix}{key}]]" if isinstance(value, list) else f"[{prefix}{key}]"]
            _toml_table(item, f"{prefix}{key}.", lines)


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item, key) for item in value) + "]"
    raise ConfigError(f"{key}: cannot write {value!r} ({type(value).__name__}) as TOML")


# Keys that name a file: two spellings of the same file (relative or absolute) are the same value.
PATH_KEYS = {("model", "init_from")}


def config_differences(old: dict, new: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(key path, old value, new value) for every key where two config dicts differ. Compare parsed configs
    (`RunConfig.to_dict()`), so that a key added to facegraph after a run was written counts at its default. A path
    (`PATH_KEYS`) differs only where the two values name different files, relative ones taken from the working
    directory."""
    differing = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differing += config_differences(a, b, (*prefix, key))
        elif a != b and not ((*prefix, key) in PATH_KEYS and a and b and Path(a).resolve() == Path(b).resolve()):
            differing.append(((*prefix, key), a, b))
    return differing


def describe_differences(differing: list[tuple[tuple[str, ...], Any, Any]]) -> str:
    """`section.key: old -> new; ...` for error messages that name what differs."""
    return "; ".join(f"{'.'.join(key)}: {a!r} -> {b!r}" for key, a, b in differing)


def config_from_dict(data: dict) -> RunConfig:
    """Rebuild a RunConfig from `config.json` of a run directory."""
    return validate(_from_dict(RunConfig, data))
