"""The paper's Table I attribute vocabulary and the coding shared by every source.

Attributes are per identity, ``{feature: label word}``; a feature missing from the dict, or the word
``UNKNOWN`` (``"unknown"``, defined here and nowhere else), means the identity has no label for it. This module
holds the vocabulary, the paper's coded annotation format (``manual_annotations.csv``, also used by the derived
LFW table) and the per-identity majority vote; each source's own files are read in its module under ``sources/``.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from facegraph.data.textfile import decoded_lines, open_binary
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"  # the label word of an attribute that is not known
UNKNOWN_CODE = -1  # its label code (a position in a feature's label list otherwise)

# Table I of the paper, in its order; the position of a word is its code in the paper's annotation file.
PAPER_FEATURES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "skin_color": ("black", "brown", "white"),
    "eye_color": ("black", "brown", "blue"),
    "facial_hair": ("none", "beard", "moustache", "both"),
    "race": ("african_descent", "asian_chinese", "asian_indian", "middle_eastern", "latino", "caucasian", "other"),
    "age": ("<35", "35-45", "45-55", ">55"),
}

# Features some sources add beyond Table I (IMDb-Face "Specs", CelebA "Eyeglasses" and "Young").
EXTRA_FEATURES: dict[str, tuple[str, ...]] = {
    "eyeglasses": ("no", "yes"),
    "young": ("no", "yes"),
}

KNOWN_FEATURES: dict[str, tuple[str, ...]] = {**PAPER_FEATURES, **EXTRA_FEATURES}

# Column of the paper's coded annotation file (and of the derived LFW table) -> feature.
CODED_COLUMNS: dict[str, str] = {
    "Gender": "gender",
    "Skin": "skin_color",
    "Eye": "eye_color",
    "Race": "race",
    "Facial_Hair": "facial_hair",
    "Age": "age",
    "Specs": "eyeglasses",
}

IdentityAttributes = dict[str, str]


def bucket_age(years: int) -> str:
    """The paper's age bracket for an age in years: < 35, [35, 45), [45, 55], > 55."""
    if years < 35:
        return "<35"
    if years < 45:
        return "35-45"
    if years <= 55:
        return "45-55"
    return ">55"


def ordered_features(names: Iterable[str]) -> dict[str, list[str]]:
    """Vocabulary of the given features: Table I features first in Table I order, then the others by name."""
    wanted = set(names)
    unknown = sorted(wanted - KNOWN_FEATURES.keys())
    if unknown:
        raise DataError(f"no vocabulary for attribute feature(s) {', '.join(unknown)}; known: {', '.join(KNOWN_FEATURES)}")
    return {name: list(words) for name, words in KNOWN_FEATURES.items() if name in wanted}


def check_word(feature: str, word: str, vocabulary: Mapping[str, Iterable[str]], where: str) -> str:
    """Return ``word`` if it is a label of ``feature`` (or ``unknown``); else a DataError naming ``where``."""
    labels = list(vocabulary[feature])
    if word != UNKNOWN and word not in labels:
        raise DataError(f"{where}, column {feature}: unknown label {word!r} (expected one of {', '.join(labels)} or {UNKNOWN})")
    return word


@dataclass(frozen=True)
class AnnotationRecord:
    """One row of a coded annotation file: the paper's ``manual_annotations.csv`` or the derived LFW table."""

    label: int
    name: str
    attributes: IdentityAttributes
    line: int


def _decode_code(path: Path, line: int, column: str, value: str) -> str:
    feature = CODED_COLUMNS[column]
    text = value.strip()
    try:
        code = int(text)
    except ValueError:
        raise DataError(f"{path}, line {line}, column {column}: value {value!r} is not an integer code") from None
    if code == -1:
        return UNKNOWN
    if feature == "age":
        if not 0 <= code <= 130:
            raise DataError(f"{path}, line {line}, column {column}: age {value!r} is not a number of years (or -1)")
        return bucket_age(code)
    words = KNOWN_FEATURES[feature]
    if not 0 <= code < len(words):
        raise DataError(
            f"{path}, line {line}, column {column}: unknown code {value!r} "
            f"(expected -1 or 0..{len(words) - 1} for {', '.join(words)})"
        )
    return words[code]


def read_coded_annotations(path: str | Path) -> list[AnnotationRecord]:
    """Read a coded per-identity file (columns ``Label,Skin,Eye,Race,Specs,Facial_Hair,Age,Gender,Name,...``).

    Codes are positions in the Table I vocabulary, -1 is unknown, Age is in years and gets bucketed. Columns
    other than the coded ones, ``Label`` and ``Name`` are ignored (the derived LFW table has vote fractions).
    """
    path = Path(path)
    with open_binary(path, "annotation file") as handle:
        reader = csv.reader(decoded_lines(path, handle))
        header = [column.strip() for column in next(reader, [])]
        if "Name" not in header or "Label" not in header:
            raise DataError(f"{path}, line 1: header {','.join(header)!r} lacks the Label and Name columns")
        coded = [column for column in header if column in CODED_COLUMNS]
        records = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
            cells = dict(zip(header, row))
            try:
                label = int(cells["Label"])
            except ValueError:
                raise DataError(f"{path}, line {line}, column Label: value {cells['Label']!r} is not an integer") from None
            name = cells["Name"].strip()
            if not name:
                raise DataError(f"{path}, line {line}, column Name: empty name")
            attributes = {CODED_COLUMNS[column]: _decode_code(path, line, column, cells[column]) for column in coded}
            records.append(AnnotationRecord(label, name, attributes, line))
    return records


def annotations_by_name(records: Iterable[AnnotationRecord], path: str | Path) -> tuple[dict[str, IdentityAttributes], list[str]]:
    """Attributes keyed by name, and the anomalies found (a name on several rows).

    A name on several rows that agree keeps their attributes; where they disagree that feature becomes unknown,
    because a label picked arbitrarily would be wrong for one of the two people.
    """
    rows_of_name: dict[str, list[AnnotationRecord]] = defaultdict(list)
    for record in records:
        rows_of_name[record.name].append(record)
    by_name: dict[str, IdentityAttributes] = {}
    anomalies = []
    for name, rows in rows_of_name.items():
        merged = dict(rows[0].attributes)
        if len(rows) > 1:
            lines = ", ".join(str(row.line) for row in rows)
            labels = ", ".join(str(row.label) for row in rows)
            conflicting = sorted({f for row in rows[1:] for f, w in row.attributes.items() if merged.get(f) != w})
            for feature in conflicting:
                merged[feature] = UNKNOWN
            detail = f"conflicting {', '.join(conflicting)} set to unknown" if conflicting else "their attributes agree"
            anomalies.append(f"{path}: name {name} is on lines {lines} with labels {labels} ({detail})")
        by_name[name] = merged
    for anomaly in anomalies:
        logger.warning(anomaly)
    return by_name, anomalies


def majority_per_identity(labelled_images: Iterable[tuple[str, IdentityAttributes]]) -> dict[str, IdentityAttributes]:
    """Per-identity majority of per-image labels; ``unknown`` votes are ignored and a tie gives ``unknown``."""
    votes: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for identity, attributes in labelled_images:
        for feature, word in attributes.items():
            counter = votes[identity][feature]  # created even for an unknown vote, so the feature is reported
            if word != UNKNOWN:
                counter[word] += 1
    result: dict[str, IdentityAttributes] = {}
    for identity, features in votes.items():
        result[identity] = {}
        for feature, counter in features.items():
            ranked = counter.most_common(2)
            tied = len(ranked) == 2 and ranked[0][1] == ranked[1][1]
            result[identity][feature] = UNKNOWN if not ranked or tied else ranked[0][0]
    return result


def attribute_coverage(attributes: Mapping[str, Mapping[str, str]], features: Iterable[str]) -> dict[str, int]:
    """Number of identities with a known label, per feature."""
    return {feature: sum(1 for attrs in attributes.values() if attrs.get(feature, UNKNOWN) != UNKNOWN) for feature in features}
