"""Table I vocabulary, the paper's coded file, and the sources' attribute readers (LFW lists and table, CelebA)."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from facegraph.data.attributes import (
    KNOWN_FEATURES,
    PAPER_FEATURES,
    UNKNOWN,
    annotations_by_name,
    bucket_age,
    majority_per_identity,
    ordered_features,
    read_coded_annotations,
)
from facegraph.data.sources.celeba import celeba_image_labels, read_celeba_attribute_file
from facegraph.data.sources.lfw import read_lfw_attributes, read_lfw_gender_lists
from facegraph.errors import DataError

HEADER = "Label,Skin,Eye,Race,Specs,Facial_Hair,Age,Gender,Name\n"


def test_ordered_features_puts_table_one_first_in_its_order() -> None:
    assert list(ordered_features({"young", "age", "eyeglasses", "gender", "race"})) == ["gender", "race", "age", "eyeglasses", "young"]
    assert ordered_features({"race"})["race"][-1] == "other"
    with pytest.raises(DataError, match="hair_colour"):
        ordered_features({"hair_colour"})


@pytest.mark.parametrize(("years", "bracket"), [(0, "<35"), (34, "<35"), (35, "35-45"), (44, "35-45"), (45, "45-55"), (55, "45-55"), (56, ">55")])
def test_age_brackets(years: int, bracket: str) -> None:
    assert bucket_age(years) == bracket


def test_coded_file_maps_codes_to_table_one_words(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text(HEADER + "0,0,2,6,1,3,40,1,Jane_Roe\r\n1,-1,-1,-1,-1,-1,-1,-1,John_Doe\r\n", encoding="utf-8")
    jane, john = read_coded_annotations(path)
    assert jane.attributes == {
        "skin_color": "black",
        "eye_color": "blue",
        "race": "other",
        "eyeglasses": "yes",
        "facial_hair": "both",
        "age": "35-45",
        "gender": "female",
    }
    assert set(john.attributes.values()) == {UNKNOWN}
    assert (jane.label, jane.name, john.line) == (0, "Jane_Roe", 3)


@pytest.mark.parametrize(
    ("row", "column", "value"),
    [("0,3,1,1,0,0,30,0,X", "Skin", "3"), ("0,1,1,1,0,0,30,2,X", "Gender", "2"), ("0,1,1,1,0,0,abc,0,X", "Age", "abc"), ("0,1,1,9,0,0,30,0,X", "Race", "9")],
)
def test_unknown_code_names_file_line_column_and_value(tmp_path: Path, row: str, column: str, value: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1,1,1,1,0,0,30,0,Fine\n" + row + "\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        read_coded_annotations(path)
    message = str(raised.value)
    assert str(path) in message and "line 3" in message and f"column {column}" in message and repr(value) in message


def test_repeated_name_keeps_agreeing_features_and_unknowns_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(HEADER + "0,2,1,5,0,0,30,0,Sam\n1,2,1,5,0,1,30,0,Sam\n", encoding="utf-8")
    by_name, anomalies = annotations_by_name(read_coded_annotations(path), path)
    assert by_name["Sam"]["facial_hair"] == UNKNOWN
    assert by_name["Sam"]["skin_color"] == "white"
    assert len(anomalies) == 1 and "Sam" in anomalies[0] and "facial_hair" in anomalies[0]


def test_paper_annotations_import_matches_raw_codes(data_imdb_dir: Path) -> None:
    path = data_imdb_dir / "manual_annotations.csv"
    with path.open(newline="") as handle:
        raw = list(csv.DictReader(handle))
    records = read_coded_annotations(path)
    assert len(records) == len(raw)
    assert Counter(r.attributes["gender"] for r in records) == Counter(PAPER_FEATURES["gender"][int(r["Gender"])] for r in raw)
    assert sum(r.attributes["age"] == ">55" for r in records) == sum(int(r["Age"]) > 55 for r in raw)
    names = Counter(r["Name"] for r in raw)
    repeated = [name for name, n in names.items() if n > 1]
    _, anomalies = annotations_by_name(records, path)
    assert len(anomalies) == len(repeated) >= 1
    assert all(any(name in anomaly for anomaly in anomalies) for name in repeated)


def test_majority_ignores_unknown_votes_and_ties_are_unknown() -> None:
    votes = [("a", {"gender": "male"}), ("a", {"gender": "male"}), ("a", {"gender": "female"}), ("a", {"gender": UNKNOWN})]
    votes += [("b", {"gender": "male"}), ("b", {"gender": "female"}), ("c", {"gender": UNKNOWN})]
    result = majority_per_identity(votes)
    assert result == {"a": {"gender": "male"}, "b": {"gender": UNKNOWN}, "c": {"gender": UNKNOWN}}


def test_lfw_gender_lists_image_in_both_lists_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("A_0001.jpg\nB_0001.jpg\n", encoding="utf-8")
    (tmp_path / "f.txt").write_text("B_0001.jpg\r\nC_0001.jpg\r\n", encoding="utf-8")
    assert read_lfw_gender_lists(tmp_path / "m.txt", tmp_path / "f.txt") == {"A_0001.jpg": "male", "B_0001.jpg": UNKNOWN, "C_0001.jpg": "female"}


def test_lfw_gender_for_every_identity_the_lists_cover(data_lfw_dir: Path) -> None:
    # The shared folder also holds everyone with 1-4 photos (5,484 people in all); the lists cover the >= 10 ones.
    every = {person.name: sorted(p.name for p in person.iterdir()) for person in data_lfw_dir.iterdir() if person.is_dir()}
    images = {name: files for name, files in every.items() if len(files) >= 10}
    assert len(every) == 5484 and sum(len(files) for files in images.values()) == 4324
    lists = data_lfw_dir.parent
    males = set((lists / "lfw_male_names.txt").read_text().split())
    females = set((lists / "lfw_female_names.txt").read_text().split())
    covered = {name for name, files in images.items() if any((f in males) != (f in females) for f in files)}
    attributes, used = read_lfw_attributes(lists, images)
    known = {name for name, attrs in attributes.items() if attrs.get("gender", UNKNOWN) != UNKNOWN}
    assert known == covered
    assert len(images) == 158 and len(known) == 158
    assert any(path.endswith("lfw_male_names.txt") for path in used)
    assert all(attrs["race"] in KNOWN_FEATURES["race"] + (UNKNOWN,) for attrs in attributes.values())


def test_celeba_facial_hair_from_mustache_no_beard_goatee() -> None:
    base = {"Male": True, "Eyeglasses": False, "Young": True, "Mustache": False, "No_Beard": True, "Goatee": False}
    assert celeba_image_labels(base)["facial_hair"] == "none"
    assert celeba_image_labels({**base, "Mustache": True})["facial_hair"] == "moustache"
    assert celeba_image_labels({**base, "No_Beard": False})["facial_hair"] == "beard"
    assert celeba_image_labels({**base, "Goatee": True, "Mustache": True})["facial_hair"] == "both"
    labels = celeba_image_labels({**base, "Male": False, "Eyeglasses": True, "Young": False})
    assert (labels["gender"], labels["eyeglasses"], labels["young"]) == ("female", "yes", "no")


def test_celeba_attribute_value_other_than_plus_minus_one_is_an_error(tmp_path: Path) -> None:
    names = "Eyeglasses Goatee Male Mustache No_Beard Young"
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text(f"2\n{names}\n000001.jpg 1 -1 1 -1 1 1\n000002.jpg 1 -1 0 -1 1 1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 4, column Male: value '0'"):
        read_celeba_attribute_file(path)


def test_celeba_identity_majority_matches_raw_votes(data_celeba_dir: Path) -> None:
    identity_of = dict(line.split() for line in (data_celeba_dir / "identity_CelebA.txt").read_text().splitlines() if line.strip())
    lines = (data_celeba_dir / "list_attr_celeba.txt").read_text().splitlines()
    male_column = lines[1].split().index("Male") + 1
    votes: dict[str, Counter] = defaultdict(Counter)
    for line in lines[2:]:
        fields = line.split()
        votes[identity_of[fields[0]]][fields[male_column]] += 1
    flags = read_celeba_attribute_file(data_celeba_dir / "list_attr_celeba.txt")
    result = majority_per_identity((identity_of[image], celeba_image_labels(values)) for image, values in flags.items())
    for identity, counter in votes.items():
        expected = UNKNOWN if counter["1"] == counter["-1"] else "male" if counter["1"] > counter["-1"] else "female"
        assert result[identity]["gender"] == expected
