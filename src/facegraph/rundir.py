"""The run directory (docs/run-directory.md): its file names, and the one reader and one writer of each file.

A run directory is the interface between train, evaluate, table2, report and predict. Every write is atomic (a
temporary file renamed over the target), and an epoch is committed in an order that a kill at any point cannot turn
into a lost metrics row or a wrong best checkpoint (see `commit_epoch`). Checkpoints hold only tensors and plain
Python values, so they load with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from facegraph.config import RunConfig, config_from_dict
from facegraph.data import UNKNOWN
from facegraph.data.prepared import IDENTITIES_FILE, MANIFEST_FILE
from facegraph.errors import ConfigError, DataError, FacegraphError

CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"
DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.jsonl"
DONE_FILE = "done.json"
LOCK_FILE = "train.lock"
EXPORT_FILE = "export.json"  # what `facegraph export` writes (last) into its folder: {"format": ..., ...}
CHECKPOINTS = "checkpoints"
LAST = "last"
BEST = "best"
PENDING_SUFFIX = ".pending"
EVAL_DIR = "eval"
VERIFY_DIR = "verify"  # verify/<name>/: what `facegraph verify` wrote for one set of pairs, in the three files below
VERIFY_SUMMARY_FILE = "summary.json"
VERIFIED_PAIRS_FILE = "pairs.csv"
SKIPPED_PAIRS_FILE = "skipped-pairs.txt"
GALLERIES_DIR = "galleries"  # galleries/<key>.npz: a gallery's embeddings, cached by `predict --gallery`
# What --resume needs of last.pt besides the weights; a best.pt or an export holds none of it.
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "rng", "epoch", "best_val_top1", "best_epoch")
# eval/<split>-images.csv: these columns, then one per dataset feature, then readout_<feature> per read-out.
IMAGE_COLUMNS = ("sample", "path", "identity", "name", "predicted", "correct", "top5_correct", "confidence",
                 "gmacs", "active_gates", "gates")
READOUT_PREFIX = "readout_"


def atomic_write_bytes(path: Path, writer: Callable[[Path], Any]) -> None:
    """Write through a temporary file in the same folder and rename it over `path`: a reader (or a crash) never sees
    half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_json(path: Path) -> Any:
    """A JSON file of a run directory; DataError naming the file when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error})") from None


def dataset_fingerprint(root: Path) -> str:
    """SHA-256 over a prepared dataset's manifest.csv and identities.csv: which images, which people, which split."""
    digest = hashlib.sha256()
    for path in (root / MANIFEST_FILE, root / IDENTITIES_FILE):
        try:
            digest.update(path.read_bytes())
        except OSError as error:
            raise DataError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest()


# prepare.json's parameters that change the pixels of the same manifest (the rest, e.g. workers, download settings or
# where the source lay, do not; which photos were chosen is the manifest's, in `dataset_fingerprint`).
PIXEL_PARAMETERS = ("center_crop", "lfw_variant")


def preparation_fingerprint(info: dict[str, Any]) -> str:
    """SHA-256 over what a prepared dataset's prepare.json (`PreparedDataset.info`, read and checked by
    load_prepared) records of how the pixels were made (image size, centre crop, LFW variant, normalisation):
    re-preparing the same photos with another crop keeps `dataset_fingerprint` but changes this."""
    parameters = info.get("parameters", {})
    described = {"image_size": info.get("image_size"), "normalization": info.get("normalization"),
                 **{key: parameters.get(key) for key in PIXEL_PARAMETERS}}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8")).hexdigest()


# What `dataset_difference` finds.
OTHER_PHOTOS = "other photos"
PREPARED_AGAIN = "prepared again"


def dataset_difference(recorded: dict[str, Any], fingerprint: str, preparation: str) -> str | None:
    """Whether a prepared dataset (its `dataset_fingerprint` and `preparation_fingerprint`) is the one a run recorded
    in dataset.json (`recorded`): None when it is; OTHER_PHOTOS for other photos, people or splits (or no fingerprint
    recorded, as in an export); PREPARED_AGAIN for the same photos with other pixels. Runs trained before the
    preparation fingerprint existed have none: they are judged on their photos alone."""
    if recorded.get("fingerprint") != fingerprint:
        return OTHER_PHOTOS
    if recorded.get("preparation_fingerprint") not in (None, preparation):
        return PREPARED_AGAIN
    return None


# ---------------------------------------------------------------------------------------------------- checkpoints

def rng_states() -> dict[str, Any]:
    """Every generator a training step draws from, as tensors and plain values (weights_only-loadable)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by facegraph (weights-only loading: no code runs from the file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FacegraphError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise FacegraphError(f"checkpoint {path} is a folder, not a file") from None
    except OSError as error:
        raise FacegraphError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for a bad file
        # torch's messages run to paragraphs of advice (weights_only=False, ...): keep the first sentence.
        text = str(error).strip()
        first = text.splitlines()[0].split(". ")[0].rstrip(".")[:160] if text else type(error).__name__
        raise FacegraphError(f"checkpoint {path} cannot be read (corrupt, truncated or not written by facegraph): "
                             f"{first}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise FacegraphError(f"checkpoint {path} is not a facegraph checkpoint (no model weights)")
    return state


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint a training can continue from (last.pt): the weights and the optimizer, scheduler and RNG state."""
    state = load_checkpoint(path)
    missing = [key for key in TRAINING_STATE_KEYS if key not in state]
    if missing:
        raise FacegraphError(f"checkpoint {path} holds no training state (no {', '.join(missing)}): --resume needs "
                             f"the last.pt a training wrote, not a copy of best.pt or an export")
    return state


# ------------------------------------------------------------------------------------------------- metrics.jsonl

def parse_metrics(path: Path, text: str) -> list[dict[str, Any]]:
    epochs = []
    for number, line in enumerate(text.splitlines(), start=1):
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


# -------------------------------------------------------------------------------------------- eval/<split>-images

@dataclass(frozen=True)
class ImageRecords:
    """eval/<split>-images.csv as columns: one entry per evaluated image."""

    path: list[str]  # relative to the dataset root
    identity: np.ndarray  # (N,) true identity id
    name: list[str]  # true identity name
    predicted: np.ndarray  # (N,) predicted identity id
    correct: np.ndarray  # (N,) bool, top-1
    confidence: np.ndarray  # (N,) softmax probability of the prediction
    gmacs: np.ndarray  # (N,)
    active_gates: np.ndarray  # (N,) int
    gates: np.ndarray  # (N, k) 0/1 per gated block, in gate order
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (N,) manifest index
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> (N,) label code, -1 = unknown
    readout: dict[str, list[str]] = field(default_factory=dict)  # feature -> label read out from the gates (eq. 5)

    def __len__(self) -> int:
        return len(self.path)

    @property
    def num_gates(self) -> int:
        return self.gates.shape[1]


def image_records_header(features: list[str], readout_features: list[str]) -> list[str]:
    return [*IMAGE_COLUMNS, *features, *(READOUT_PREFIX + f for f in readout_features)]


def _parse_field(path: Path, line: int, column: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        article = "an" if kind is int else "a"
        raise DataError(f"{path}, line {line}, column {column}: value {text!r} is not {article} {kind.__name__}") from None


def read_image_records(path: Path, features: dict[str, list[str]]) -> ImageRecords:
    """eval/<split>-images.csv; feature columns are coded against the dataset's label words (`features`)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            rows = list(enumerate(reader, start=2))
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path}: malformed CSV ({error})") from None
    missing = [column for column in IMAGE_COLUMNS if column not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {', '.join(missing)}")
    feature_columns = [feature for feature in features if feature in header]
    readout_columns = [column.removeprefix(READOUT_PREFIX) for column in header if column.startswith(READOUT_PREFIX)]
    positions = {feature: {word: code for code, word in enumerate(words)} for feature, words in features.items()}
    columns: dict[str, list] = {name: [] for name in IMAGE_COLUMNS}
    labels: dict[str, list[int]] = {feature: [] for feature in feature_columns}
    readout: dict[str, list[str]] = {feature: [] for feature in readout_columns}
    gate_rows: list[list[int]] = []
    num_gates = None
    for line, row in rows:
        if None in row or any(row[column] is None for column in header):
            raise DataError(f"{path}, line {line}: {len(header)} fields expected")
        for column, kind in (("sample", int), ("identity", int), ("predicted", int), ("correct", int),
                             ("confidence", float), ("gmacs", float), ("active_gates", int)):
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
            readout[feature].append(row[READOUT_PREFIX + feature])
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
        sample=np.array(columns["sample"], dtype=np.int64),
        labels={feature: np.array(codes, dtype=np.int64) for feature, codes in labels.items()},
        readout=readout,
    )


# -------------------------------------------------------------------------------------------- galleries/<key>.npz

def write_gallery_cache(path: Path, embeddings: np.ndarray, people: list[str], paths: list[str],
                        skipped: list[tuple[str, str]]) -> None:
    """A gallery's embeddings, each one's person and image path, and the images skipped with their error."""
    def save(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file object: np.savez would add ".npz" to a temporary file's name
            np.savez(handle, embeddings=embeddings, people=np.array(people, dtype=str),
                     paths=np.array(paths, dtype=str),
                     skipped=np.array([f"{image}\t{error}" for image, error in skipped], dtype=str))

    atomic_write_bytes(path, save)


def read_gallery_cache(path: Path) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """The embeddings, people and skipped images `write_gallery_cache` wrote; OSError, KeyError or ValueError when the
    file is unreadable."""
    with np.load(path, allow_pickle=False) as cached:
        return (cached["embeddings"], [str(n) for n in cached["people"]],
                [tuple(s.split("\t", 1)) for s in cached["skipped"].tolist()])


def prototypes_as_json(prototypes: torch.Tensor) -> list[list[float | None]]:
    """Per-label mean gate vectors as eval/<split>.json stores them: a label without training images (inf) as null."""
    return [[None if math.isinf(v) else v for v in row] for row in prototypes.tolist()]


# ---------------------------------------------------------------------------------------------- the run directory

@dataclass(frozen=True)
class RunDir:
    """One run directory: where each file lives and how it is read. Reading never changes the directory."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str from a caller works too

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def dataset_path(self) -> Path:
        return self.path / DATASET_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def done_path(self) -> Path:
        return self.path / DONE_FILE

    @property
    def environment_path(self) -> Path:
        return self.path / ENVIRONMENT_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def checkpoint_path(self, name: str) -> Path:
        return self.path / CHECKPOINTS / f"{name}.pt"

    def evaluation_path(self, split: str) -> Path:
        return self.path / EVAL_DIR / f"{split}.json"

    def image_records_path(self, split: str) -> Path:
        return self.path / EVAL_DIR / f"{split}-images.csv"

    def verification_dir(self, name: str) -> Path:
        return self.path / VERIFY_DIR / name

    def verification_dirs(self) -> list[Path]:
        """The verify/<name>/ folders that hold a pairs.csv, sorted by name."""
        return sorted(p.parent for p in (self.path / VERIFY_DIR).glob(f"*/{VERIFIED_PAIRS_FILE}"))

    def gallery_cache_path(self, key: str) -> Path:
        return self.path / GALLERIES_DIR / f"{key}.npz"

    @property
    def is_done(self) -> bool:
        return self.done_path.is_file()

    def config_dict(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def config(self) -> RunConfig:
        try:
            return config_from_dict(self.config_dict())
        except ConfigError as error:
            raise DataError(f"{self.config_path}: {error}") from None

    def dataset(self) -> dict[str, Any]:
        return read_json(self.dataset_path)

    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one object per committed epoch, in file order ([] before the first epoch)."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read {self.metrics_path}: {error}") from None
        return parse_metrics(self.metrics_path, text)

    def evaluation(self, split: str) -> dict[str, Any] | None:
        path = self.evaluation_path(split)
        return read_json(path) if path.is_file() else None

    def image_records(self, split: str, features: dict[str, list[str]]) -> ImageRecords | None:
        path = self.image_records_path(split)
        return read_image_records(path, features) if path.is_file() else None

    def verification_summary(self, name: str) -> dict[str, Any] | None:
        """verify/<name>/summary.json; None when the run was not verified on those pairs."""
        path = self.verification_dir(name) / VERIFY_SUMMARY_FILE
        return read_json(path) if path.is_file() else None

    def stored_prototypes(self, features: dict[str, list[str]], num_gates: int,
                          dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Per-label mean gate vectors that evaluate stored (eval/<split>.json readout.<feature>.prototypes, the test
        split's, else val's); a label without training images has none (null): read as inf, so it is never the
        nearest. `dtype` float64 keeps the stored numbers exactly (an export writes them again)."""
        for split in ("test", "val"):
            evaluation = self.evaluation(split)
            if evaluation is None:
                continue
            found = {}
            for feature, result in evaluation.get("readout", {}).items():
                rows = result.get("prototypes")
                if feature in features and rows is not None:
                    tensor = torch.tensor([[float("inf") if v is None else v for v in row] for row in rows], dtype=dtype)
                    if tensor.shape == (len(features[feature]), num_gates):
                        found[feature] = tensor
            return found
        return {}

    # -------------------------------------------------------------------------------------------------- writing

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold train.lock (an exclusive flock) while training: a second training of this run fails at once instead
        of interleaving its writes. The kernel drops the lock when the holder dies, so a killed run never leaves it
        held; the file itself stays and only records the last holder's pid."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(handle, 32).decode("ascii", errors="replace").strip() or "unknown"
                raise FacegraphError(f"{self.path} is being trained by another process (pid {holder})") from None
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()}\n".encode("ascii"))
            yield
        finally:
            os.close(handle)  # releases the lock

    def write_start(self, config: RunConfig, environment: dict[str, Any], dataset: dict[str, Any]) -> None:
        """config.json last: it marks a run as started (open_run, --resume), so a kill before it leaves a folder a
        fresh training may take over, never a started run without its dataset.json."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.environment_path, environment)
        write_json(self.dataset_path, dataset)
        write_json(self.config_path, config.to_dict())

    def record_resume(self, environment: dict[str, Any]) -> dict[str, Any]:
        """Append what resumed the run to environment.json's `resumed` list, keeping what started it (its argv, git
        revision, host, start time); returns the whole record."""
        recorded = read_json(self.environment_path) if self.environment_path.is_file() else {}
        recorded.setdefault("resumed", []).append(environment)
        write_json(self.environment_path, recorded)
        return recorded

    def write_evaluation(self, split: str, summary: dict[str, Any]) -> None:
        write_json(self.evaluation_path(split), summary)

    def write_done(self, summary: dict[str, Any]) -> None:
        write_json(self.done_path, summary)

    def commit_epoch(self, state: dict[str, Any], row: dict[str, Any], improved: bool) -> None:
        """Commit one finished epoch: a kill at any point leaves either the previous epoch or this one, whole.

        1. when `improved`, the new best weights go to best.pt.pending;
        2. last.pt (the commit point) is replaced, holding the state, the metrics row and the best epoch;
        3. best.pt.pending is renamed over best.pt;
        4. the row is appended to metrics.jsonl.
        `recover` completes or rolls back steps 3-4 from last.pt.
        """
        best = self.checkpoint_path(BEST)
        pending = best.with_name(best.name + PENDING_SUFFIX)
        if improved:
            save_checkpoint(pending, {"model": state["model"], "epoch": state["epoch"]})
        save_checkpoint(self.checkpoint_path(LAST), {**state, "row": row})
        if improved:
            os.replace(pending, best)
        self._append_metrics(row)

    def recover(self) -> dict[str, Any] | None:
        """Bring an interrupted run to its last committed epoch and return last.pt's state (None without one):
        finish or drop a pending best checkpoint, and make metrics.jsonl hold exactly the committed epochs."""
        last_path = self.checkpoint_path(LAST)
        state = load_training_checkpoint(last_path) if last_path.is_file() else None
        for folder in (self.path, last_path.parent):  # temporaries of writes a kill cut short (atomic_write_bytes)
            for stale in folder.glob(".*.tmp*"):
                stale.unlink(missing_ok=True)
        best = self.checkpoint_path(BEST)
        pending = best.with_name(best.name + PENDING_SUFFIX)
        if pending.is_file():
            if state is not None and load_checkpoint(pending).get("epoch") == state["best_epoch"]:
                os.replace(pending, best)
            else:
                pending.unlink()
        if state is None:
            return None
        rows = [row for row in self.metrics() if row["epoch"] <= state["epoch"]]
        if not rows or rows[-1]["epoch"] != state["epoch"]:
            rows.append(state["row"])
        write_text(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows))
        return state

    def _append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """`path` can be a folder to write into: it is one, or it can be created (no file in the way). Checked before
    anything is written, so a bad --out fails at once with one line."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                where = "is a file" if folder == path else f"lies under {folder}, which is a file"
                raise FacegraphError(f"{option} {path} {where}, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise FacegraphError(f"{option} {path}: {folder} is not writable")
            break
    return path


def open_run(path: str | Path) -> RunDir:
    """An existing run directory, or a one-line error saying why `path` is not one."""
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise FacegraphError(f"run directory {run.path} does not exist")
    if not run.config_path.is_file():
        raise FacegraphError(f"{run.path} is not a run directory (no {CONFIG_FILE}); create one with `facegraph train`")
    return run
