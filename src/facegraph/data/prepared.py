"""The prepared-dataset format: ``manifest.csv``, ``identities.csv``, ``prepare.json`` and ``images/``.

Reading validates everything a training run relies on; writing stages into ``<out>.partial-<pid>`` and renames it
into place only when complete, so an interrupted prepare never leaves a dataset that looks complete.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import reprlib
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    import torch

from facegraph.data.attributes import UNKNOWN, UNKNOWN_CODE, check_word
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

FORMAT_NAME = "facegraph-prepared"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.csv"
IDENTITIES_FILE = "identities.csv"
PREPARE_FILE = "prepare.json"
IMAGES_DIR = "images"
SPLIT_NAMES = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "identity", "split", "source")
PARTIAL_SUFFIX = ".partial-"


@dataclass(frozen=True)
class Identity:
    """One person: a stable integer id (position in name order), the name and its attribute labels."""

    id: int
    name: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One prepared image: its path relative to the dataset root, identity id, split and where it came from."""

    path: str
    identity: int
    split: str
    source: str = ""


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset as read from disk (see docs/data.md for the format)."""

    root: Path
    image_size: int
    identities: list[Identity]
    samples: list[Sample]
    features: dict[str, list[str]]
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    center_crop: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_identities(self) -> int:
        return len(self.identities)

    @property
    def splits(self) -> list[str]:
        """Split names present, in train/val/test order."""
        present = {sample.split for sample in self.samples}
        return [name for name in SPLIT_NAMES if name in present]

    def preprocessing(self) -> dict[str, Any]:
        """How images were cut and normalised: ``{image_size, center_crop, mean, std}``, the one shape
        ``load_image_for_inference`` reads (a training run stores it in its ``dataset.json``)."""
        return {"image_size": self.image_size, "center_crop": self.center_crop, "mean": list(self.mean), "std": list(self.std)}

    def split_indices(self, split: str) -> list[int]:
        """Indices into ``samples`` of the samples in ``split``."""
        if split not in SPLIT_NAMES:
            raise DataError(f"unknown split {split!r}; splits are {', '.join(SPLIT_NAMES)}")
        return [index for index, sample in enumerate(self.samples) if sample.split == split]

    def cross_validation_fold(self, folds: int, fold: int, seed: int = 0) -> "PreparedDataset":
        """The same photos re-split for k-fold cross-validation: each person's photos, from every split, are dealt
        into `folds` folds in a shuffled order fixed by `seed`; fold `fold` becomes the test split and the rest train
        (the trainer carves its validation part from train). Over folds 0..k-1 every photo is tested exactly once,
        and a person with at least k photos appears in every test fold. Another `seed` deals another partition."""
        if folds < 2 or not 0 <= fold < folds or seed < 0:
            raise DataError(f"cross-validation needs folds >= 2, 0 <= fold < folds and seed >= 0, got fold {fold} of "
                            f"{folds}, seed {seed}")
        import numpy as np  # here, so that the CLI parses arguments without loading numpy

        by_identity: dict[int, list[int]] = {}
        for index, sample in enumerate(self.samples):
            by_identity.setdefault(sample.identity, []).append(index)
        # The dealing order is fixed (not the training seed): folds must partition the photos across runs. Seed 0
        # keeps the entropy of the first dealing, so runs made before the seed existed keep their folds.
        rng = np.random.default_rng([len(self.samples), folds, seed] if seed else [len(self.samples), folds])
        fold_of = [0] * len(self.samples)
        offset = 0
        for identity in sorted(by_identity):
            for position, i in enumerate(rng.permutation(len(by_identity[identity]))):
                # The offset rotates which folds get a person's surplus photos, keeping the folds equal in size.
                fold_of[by_identity[identity][i]] = (position + offset) % folds
            offset += len(by_identity[identity])
        samples = [replace(sample, split="test" if fold_of[i] == fold else "train")
                   for i, sample in enumerate(self.samples)]
        return replace(self, samples=samples, info={**self.info, "cross_validation": {"folds": folds, "fold": fold,
                                                                                      "seed": seed}})

    def with_validation_from_train(self, fraction: float, seed: int, split: str = "val") -> "PreparedDataset":
        """The same photos with a seeded `fraction` of each person's training photos moved into `split` (at least one
        for people with three or more; `holdout`): how a run without a validation split chooses its
        checkpoint on images it does not train on, never on test. Training and later evaluation see the same parts."""
        _, held = holdout(self, "train", fraction, seed)
        held_out = set(held)
        samples = [replace(sample, split=split) if i in held_out else sample for i, sample in enumerate(self.samples)]
        return replace(self, samples=samples, info={**self.info, "validation_from_train": {
            "fraction": fraction, "seed": seed, "split": split, "images": len(held)}})

    def attribute_codes(self, feature: str) -> torch.Tensor:
        """Per sample, the index of its identity's label in ``features[feature]``; -1 where unknown."""
        if feature not in self.features:
            available = ", ".join(self.features) or "none"
            raise DataError(f"dataset {self.root} has no attribute feature {feature!r} (it has: {available})")
        position = {word: code for code, word in enumerate(self.features[feature])}
        per_identity = [position.get(identity.attributes.get(feature, UNKNOWN), UNKNOWN_CODE) for identity in self.identities]
        import torch  # here, so that the CLI parses arguments without loading torch

        return torch.tensor([per_identity[sample.identity] for sample in self.samples], dtype=torch.long)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            rows = [(line, row) for line, row in enumerate(reader, start=2) if row]
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path}: malformed CSV ({error})") from None
    return header, rows


def _read_info(root: Path) -> dict[str, Any]:
    info_path = root / PREPARE_FILE
    if not info_path.is_file():
        partial = next(root.parent.glob(f"{root.name}{PARTIAL_SUFFIX}*"), None)
        hint = f" ({partial} is an unfinished prepare)" if partial else ""
        raise DataError(f"{root} is not a prepared dataset: {PREPARE_FILE} is missing{hint}; run `facegraph prepare`")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{info_path}: cannot be read as JSON ({error})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise DataError(f"{info_path}: not a {FORMAT_NAME} file")
    if info.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{info_path}: format version {info.get('format_version')!r}, this facegraph reads {FORMAT_VERSION}")
    for key in ("image_size", "features", "counts", "normalization"):
        if key not in info:
            raise DataError(f"{info_path}: key {key!r} is missing")
    _check_info(info_path, info)
    return info


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_info(info_path: Path, info: dict[str, Any]) -> None:
    """The types and shapes of what ``load_prepared`` reads from ``prepare.json`` (as ``StagedDataset.commit`` writes
    it), so that a hand-edited file fails here, not as a traceback in the middle of training."""

    def bad(key: str, value: Any, expected: str) -> DataError:
        return DataError(f"{info_path}: {key} is {reprlib.repr(value)}, expected {expected}")

    def member(section: dict[str, Any], name: str, key: str) -> Any:
        if key not in section:
            raise DataError(f"{info_path}: key {f'{name}.{key}'!r} is missing")
        return section[key]

    image_size = info["image_size"]
    if not _is_count(image_size) or image_size == 0:
        raise bad("image_size", image_size, "a positive whole number of pixels")
    features = info["features"]
    if not isinstance(features, dict):
        raise bad("features", features, "a mapping of feature name to its list of labels")
    for name, words in features.items():
        if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
            raise bad(f"features.{name}", words, "a list of label strings")
    counts = info["counts"]
    if not isinstance(counts, dict):
        raise bad("counts", counts, "a mapping with the numbers of identities and images")
    for key in ("identities", "images"):
        if not _is_count(value := member(counts, "counts", key)):
            raise bad(f"counts.{key}", value, "a whole number >= 0")
    normalization = info["normalization"]
    if not isinstance(normalization, dict):
        raise bad("normalization", normalization, "a mapping with mean and std")
    for key, low in (("mean", -math.inf), ("std", 0.0)):  # a std of 0 divides by zero when images are normalised
        values = member(normalization, "normalization", key)
        if not isinstance(values, list) or len(values) != 3 or not all(_is_finite(v) and v > low for v in values):
            raise bad(f"normalization.{key}", values,
                      "three finite numbers, one per RGB channel" + (", each > 0" if low == 0 else ""))
    parameters = info.get("parameters", {})
    if not isinstance(parameters, dict):
        raise bad("parameters", parameters, "a mapping")
    center_crop = parameters.get("center_crop", 1.0)
    if not _is_finite(center_crop) or not 0 < center_crop <= 1:
        raise bad("parameters.center_crop", center_crop, "a fraction in (0, 1]")


def _read_identities(root: Path, features: dict[str, list[str]]) -> list[Identity]:
    path = root / IDENTITIES_FILE
    header, rows = _read_csv(path)
    expected = ["identity", "name", *features]
    if header != expected:
        raise DataError(f"{path}, line 1: header {','.join(header)!r}, expected {','.join(expected)!r}")
    identities: list[Identity] = []
    line_of_name: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, expected {len(header)}")
        if row[0] != str(len(identities)):
            raise DataError(f"{path}, line {line}, column identity: value {row[0]!r}, expected {len(identities)} (ids are 0..n-1 in order)")
        name = row[1]
        if name in line_of_name:
            raise DataError(f"{path}, line {line}, column name: duplicate identity name {name!r} (also on line {line_of_name[name]})")
        line_of_name[name] = line
        attributes = {feature: check_word(feature, word, features, f"{path}, line {line}") for feature, word in zip(features, row[2:])}
        identities.append(Identity(len(identities), name, attributes))
    return identities


def _read_samples(root: Path, identity_count: int) -> list[Sample]:
    path = root / MANIFEST_FILE
    header, rows = _read_csv(path)
    if tuple(header) != MANIFEST_COLUMNS:
        raise DataError(f"{path}, line 1: header {','.join(header)!r}, expected {','.join(MANIFEST_COLUMNS)!r}")
    samples: list[Sample] = []
    missing: list[str] = []
    for line, row in rows:
        if len(row) != len(MANIFEST_COLUMNS):
            raise DataError(f"{path}, line {line}: {len(row)} fields, expected {len(MANIFEST_COLUMNS)}")
        image, identity_text, split, source = row
        relative = PurePosixPath(image)
        if relative.is_absolute() or ".." in relative.parts or not image:
            raise DataError(f"{path}, line {line}, column path: {image!r} is not a path inside the dataset")
        # isdigit alone admits digits int() refuses ('²'); isascii keeps to 0-9.
        if not (identity_text.isascii() and identity_text.isdigit()) or int(identity_text) >= identity_count:
            raise DataError(f"{path}, line {line}, column identity: {identity_text!r} is not an identity of {IDENTITIES_FILE}")
        if split not in SPLIT_NAMES:
            raise DataError(f"{path}, line {line}, column split: unknown split {split!r} (expected {', '.join(SPLIT_NAMES)})")
        if not (root / image).is_file():
            missing.append(f"line {line}: {image}")
        samples.append(Sample(image, int(identity_text), split, source))
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{path}: {len(missing)} listed image(s) missing: {shown}")
    return samples


def load_prepared(root: str | Path) -> PreparedDataset:
    """Read and validate a prepared dataset; DataError naming the file and line if it is not a complete one."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"prepared dataset {root} does not exist or is not a directory")
    info = _read_info(root)
    features = {name: list(words) for name, words in info["features"].items()}
    identities = _read_identities(root, features)
    samples = _read_samples(root, len(identities))
    counts = info["counts"]
    if counts.get("identities") != len(identities) or counts.get("images") != len(samples):
        raise DataError(
            f"{root}: {PREPARE_FILE} records {counts.get('identities')} identities / {counts.get('images')} images "
            f"but the CSV files hold {len(identities)} / {len(samples)}; the dataset was altered or is incomplete"
        )
    normalization = info["normalization"]
    return PreparedDataset(
        root=root,
        image_size=info["image_size"],
        identities=identities,
        samples=samples,
        features=features,
        mean=tuple(float(v) for v in normalization["mean"]),
        std=tuple(float(v) for v in normalization["std"]),
        center_crop=float(info.get("parameters", {}).get("center_crop", 1.0)),
        info=info,
    )


def _process_alive(pid_text: str) -> bool:
    if not (pid_text.isascii() and pid_text.isdigit()):
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class StagedDataset:
    """A prepared dataset being written into ``<out>.partial-<pid>``; ``commit`` renames it to ``out``.

    Use as a context manager: leaving the block without ``commit`` (an error, Ctrl-C) removes the staging folder.
    """

    def __init__(self, out: str | Path, *, overwrite: bool = False) -> None:
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise DataError(f"{self.out} already exists; choose another --out or pass --overwrite")
        # One staging folder per process, so two prepares of the same `out` never write into each other's.
        self.staging = self.out.with_name(f"{self.out.name}{PARTIAL_SUFFIX}{os.getpid()}")
        self._committed = False

    def __enter__(self) -> StagedDataset:
        for stale in self.out.parent.glob(f"{self.out.name}{PARTIAL_SUFFIX}*"):
            if not _process_alive(stale.name.rsplit("-", 1)[-1]):
                logger.info("removing %s left by an interrupted prepare", stale)
                shutil.rmtree(stale, ignore_errors=True)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            (self.staging / IMAGES_DIR).mkdir(parents=True)
        except OSError as error:
            raise DataError(f"cannot create {self.staging} for output {self.out}: {error.strerror or error}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._committed and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self, identities: list[Identity], samples: list[Sample], features: dict[str, list[str]], info: dict[str, Any]) -> Path:
        """Write the CSV files and ``prepare.json`` (last), then move the dataset into place."""
        try:
            return self._commit(identities, samples, features, info)
        except OSError as error:
            raise DataError(f"cannot write the prepared dataset {self.out}: {error.strerror or error}") from None

    def _commit(self, identities: list[Identity], samples: list[Sample], features: dict[str, list[str]], info: dict[str, Any]) -> Path:
        with (self.staging / IDENTITIES_FILE).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["identity", "name", *features])
            for identity in identities:
                writer.writerow([identity.id, identity.name, *(identity.attributes.get(f, UNKNOWN) for f in features)])
        with (self.staging / MANIFEST_FILE).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(MANIFEST_COLUMNS)
            for sample in samples:
                writer.writerow([sample.path, sample.identity, sample.split, sample.source])
        info = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **info, "features": features}
        (self.staging / PREPARE_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if self.out.exists():
            # Swap rather than delete first: `out` is never a mix of the old and the new dataset.
            previous = self.out.with_name(self.out.name + f".old-{os.getpid()}")
            os.replace(self.out, previous)
            os.replace(self.staging, self.out)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(self.staging, self.out)
        self._committed = True
        return self.out


def holdout(dataset: PreparedDataset, split: str, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split `split` into (kept, held out): per identity, a seeded `fraction` of its images (at least one, for people
    with three or more) is held out, so a dataset prepared without a validation split can still choose its checkpoint
    on images it does not train on, never on test."""
    import numpy as np  # here, so that the CLI parses arguments without loading numpy

    by_identity: dict[int, list[int]] = {}
    for index in dataset.split_indices(split):
        by_identity.setdefault(dataset.samples[index].identity, []).append(index)
    rng = np.random.default_rng([seed, 7])
    kept, held = [], []
    for identity in sorted(by_identity):
        indices = by_identity[identity]
        count = max(1, round(fraction * len(indices))) if len(indices) >= 3 else 0
        order = rng.permutation(len(indices))
        held += [indices[i] for i in order[:count]]
        kept += [indices[i] for i in order[count:]]
    return sorted(kept), sorted(held)
