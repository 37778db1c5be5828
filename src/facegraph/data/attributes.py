"""The paper's Table I attribute vocabulary and the importers that map attribute files onto it.

Every importer returns per-identity attributes as ``{feature: label word}``; a feature missing from the
dict, or the word ``unknown``, means the identity has no label for it.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from facegraph.errors import DataError

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"

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

# CelebA attribute names the importer reads.
CELEBA_USED_ATTRIBUTES = ("Male", "Mustache", "No_Beard", "Goatee", "Eyeglasses", "Young")

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
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise DataError(f"cannot read annotation file {path}: {error.strerror}") from None
    with handle:
        reader = csv.reader(handle)
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


def _read_name_list(path: Path) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise DataError(f"cannot read LFW gender list {path}: {error.strerror}") from None
    return {line.strip() for line in text.splitlines() if line.strip()}


def read_lfw_gender_lists(male_list: str | Path, female_list: str | Path) -> dict[str, str]:
    """Per-image gender from the LFW gender lists (one image file name a line); an image in both is unknown."""
    males = _read_name_list(Path(male_list))
    females = _read_name_list(Path(female_list))
    genders = {image: "male" for image in males - females}
    genders.update({image: "female" for image in females - males})
    genders.update({image: UNKNOWN for image in males & females})
    return genders


LFW_MALE_LIST = "lfw_male_names.txt"
LFW_FEMALE_LIST = "lfw_female_names.txt"
LFW_DERIVED_TABLE = "lfw_identity_attributes_derived.csv"


def read_lfw_attributes(lfw_dir: str | Path, images_of_identity: Mapping[str, Iterable[str]]) -> tuple[dict[str, IdentityAttributes], list[str]]:
    """LFW attributes per identity from the files in ``lfw_dir``, and the list of files used.

    Gender is the per-identity majority over the gender lists (``lfw_male_names.txt``,
    ``lfw_female_names.txt``); if ``lfw_identity_attributes_derived.csv`` is there, its other features are
    added (model-derived, noisy). ``images_of_identity`` maps each identity name to its image file names.
    """
    lfw_dir = Path(lfw_dir)
    male, female = lfw_dir / LFW_MALE_LIST, lfw_dir / LFW_FEMALE_LIST
    derived = lfw_dir / LFW_DERIVED_TABLE
    if not (male.is_file() and female.is_file()) and not derived.is_file():
        raise DataError(f"{lfw_dir} has neither the LFW gender lists ({LFW_MALE_LIST}, {LFW_FEMALE_LIST}) nor {LFW_DERIVED_TABLE}")
    used: list[str] = []
    attributes: dict[str, IdentityAttributes] = {name: {} for name in images_of_identity}
    if derived.is_file():
        table, _ = annotations_by_name(read_coded_annotations(derived), derived)
        for name in attributes:
            if name in table:
                attributes[name].update(table[name])
        used.append(str(derived))
    if male.is_file() and female.is_file():
        genders = read_lfw_gender_lists(male, female)
        votes = ((name, {"gender": genders.get(image, UNKNOWN)}) for name, images in images_of_identity.items() for image in images)
        for name, voted in majority_per_identity(votes).items():
            # The lists are human labels: they take precedence over the table's copy of them.
            attributes[name]["gender"] = voted["gender"]
        used += [str(male), str(female)]
    return attributes, used


def read_celeba_attribute_file(path: str | Path) -> dict[str, dict[str, bool]]:
    """Per-image CelebA attributes from ``list_attr_celeba.txt`` (count line, names line, ``<image> <1|-1>...``)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        raise DataError(f"cannot read CelebA attribute file {path}: {error.strerror}") from None
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}, line 1: {lines[0]!r} is not the image count") from None
    names = lines[1].split()
    missing = [name for name in CELEBA_USED_ATTRIBUTES if name not in names]
    if missing:
        raise DataError(f"{path}, line 2: attribute(s) {', '.join(missing)} missing from the header")
    flags: dict[str, dict[str, bool]] = {}
    for line_number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise DataError(f"{path}, line {line_number}: {len(fields) - 1} values, expected {len(names)}")
        image, values = fields[0], fields[1:]
        for name, value in zip(names, values):
            if value not in ("1", "-1"):
                raise DataError(f"{path}, line {line_number}, column {name}: value {value!r} is neither 1 nor -1")
        if image in flags:
            raise DataError(f"{path}, line {line_number}: image {image} is listed twice")
        flags[image] = {name: value == "1" for name, value in zip(names, values)}
    if len(flags) != declared:
        logger.warning("%s declares %d images but lists %d", path, declared, len(flags))
    return flags


def celeba_image_labels(flags: Mapping[str, bool]) -> IdentityAttributes:
    """Feature labels of one CelebA image: Male -> gender; Mustache / No_Beard / Goatee -> facial_hair; Eyeglasses; Young."""
    beard = not flags["No_Beard"] or flags["Goatee"]
    moustache = flags["Mustache"]
    facial_hair = "both" if beard and moustache else "beard" if beard else "moustache" if moustache else "none"
    return {
        "gender": "male" if flags["Male"] else "female",
        "facial_hair": facial_hair,
        "eyeglasses": "yes" if flags["Eyeglasses"] else "no",
        "young": "yes" if flags["Young"] else "no",
    }


def attribute_coverage(attributes: Mapping[str, Mapping[str, str]], features: Iterable[str]) -> dict[str, int]:
    """Number of identities with a known label, per feature."""
    return {feature: sum(1 for attrs in attributes.values() if attrs.get(feature, UNKNOWN) != UNKNOWN) for feature in features}
