"""`facegraph prepare celeba`: official files, per-identity majority attributes, missing and malformed rows."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from facegraph.cli import main
from facegraph.data import Selection, load_prepared, prepare_celeba
from facegraph.data.sources.celeba import scan_celeba
from facegraph.errors import DataError

ATTRIBUTE_NAMES = "5_o_Clock_Shadow Eyeglasses Goatee Male Mustache No_Beard Young"


def test_subset_scan_finds_every_listed_image_and_attributes(data_celeba_dir: Path) -> None:
    listed = [line.split() for line in (data_celeba_dir / "identity_CelebA.txt").read_text().splitlines() if line.strip()]
    source = scan_celeba(data_celeba_dir)
    assert len(source.candidates) == len({identity for _, identity in listed})
    assert sum(len(c) for c in source.candidates.values()) == len(listed)
    assert not source.dropped_images
    features = Counter(f for attrs in source.attributes.values() for f in attrs)
    assert set(features) == {"gender", "facial_hair", "eyeglasses", "young"}
    assert features["gender"] == len(source.candidates)


def test_subset_prepares_with_attributes(tmp_path: Path, data_celeba_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["prepare", "celeba", str(data_celeba_dir), "--out", str(tmp_path / "celeba"), "--image-size", "16", "--max-identities", "12", "--no-progress"])
    assert code == 0
    dataset = load_prepared(tmp_path / "celeba")
    assert dataset.num_identities == 12
    assert list(dataset.features) == ["gender", "facial_hair", "eyeglasses", "young"]
    assert dataset.features["young"] == ["no", "yes"]
    known = sum(i.attributes["gender"] != "unknown" for i in dataset.identities)
    assert known >= 10
    assert f"gender {known}/12" in capsys.readouterr().out
    assert (dataset.attribute_codes("gender") >= 0).sum() > 0


def test_official_flat_layout_with_missing_and_malformed_rows(tmp_path: Path, data_make_photo: Callable[..., Path]) -> None:
    root = tmp_path / "celeba"
    for number in range(1, 7):
        data_make_photo(root / "img_align_celeba" / f"{number:06d}.jpg", (number * 30, 90, 90), size=(36, 44))
    (root / "identity_CelebA.txt").write_text(
        "000001.jpg 10\n000002.jpg 10\n000003.jpg 10\nbroken line here\n000004.jpg 20\n000005.jpg 20\n000006.jpg 20\n000009.jpg 20\n", encoding="utf-8"
    )
    rows = [
        "000001.jpg -1 -1 -1 1 -1 1 1",
        "000002.jpg -1 -1 -1 1 1 1 1",
        "000003.jpg -1 1 -1 1 1 1 1",
        "000004.jpg -1 -1 -1 -1 -1 1 -1",
        "000005.jpg -1 -1 -1 -1 -1 1 -1",
        "000006.jpg -1 -1 -1 1 -1 1 -1",
    ]
    (root / "list_attr_celeba.txt").write_text("6\n" + ATTRIBUTE_NAMES + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = prepare_celeba(root, tmp_path / "out", Selection(image_size=12))
    info = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert info["dropped"]["images"] == {"malformed_row": 1, "missing_file": 1}
    dataset = load_prepared(result.root)
    attributes = {i.name: i.attributes for i in dataset.identities}
    assert attributes["10"] == {"gender": "male", "facial_hair": "moustache", "eyeglasses": "no", "young": "yes"}
    assert attributes["20"]["gender"] == "female" and attributes["20"]["young"] == "no"
    assert len(dataset.samples) == 6


def test_nothing_found_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 1\n", encoding="utf-8")
    with pytest.raises(DataError, match="none of the images"):
        scan_celeba(tmp_path)


def test_facial_hair_reads_no_beard_as_any_facial_hair() -> None:
    from facegraph.data.sources.celeba import celeba_facial_hair

    def hair(goatee: bool, mustache: bool, no_beard: bool) -> str:
        return celeba_facial_hair({"Goatee": goatee, "Mustache": mustache, "No_Beard": no_beard})

    assert hair(goatee=False, mustache=False, no_beard=True) == "none"
    assert hair(goatee=False, mustache=False, no_beard=False) == "beard"
    assert hair(goatee=True, mustache=False, no_beard=False) == "beard"
    assert hair(goatee=True, mustache=True, no_beard=False) == "both"
    assert hair(goatee=False, mustache=True, no_beard=True) == "moustache"
    # No_Beard = -1 is CelebA's flag for any facial hair: with a moustache it cannot say whether a beard is there too.
    assert hair(goatee=False, mustache=True, no_beard=False) == "unknown"
