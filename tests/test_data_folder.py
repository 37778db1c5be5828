"""`facegraph prepare folder` / `lfw`: the LFW layout, bad input, cropping, selection options."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegraph.cli import main
from facegraph.data import Selection, load_prepared, prepare_folder, prepare_lfw
from facegraph.errors import DataError


def test_lfw_min_10_gives_158_identities_4324_images_with_gender(tmp_path: Path, data_lfw_dir: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lfw10"
    code = main(
        ["prepare", "folder", str(data_lfw_dir), "--min-images", "10", "--center-crop", "0.45", "--image-size", "24",
         "--attributes-lfw", str(data_lfw_dir.parent), "--out", str(out), "--no-progress"]
    )
    assert code == 0
    dataset = load_prepared(out)
    on_disk = {p.name: len(list(p.iterdir())) for p in data_lfw_dir.iterdir() if p.is_dir()}
    expected = {name: n for name, n in on_disk.items() if n >= 10}
    assert dataset.num_identities == len(expected) == 158
    assert len(dataset.samples) == sum(expected.values()) == 4324
    assert all(identity.attributes["gender"] in ("male", "female") for identity in dataset.identities)
    assert "prepared 158 identities, 4324 images" in capsys.readouterr().out


def test_prepare_lfw_command_gives_the_158_people_with_10_photos(tmp_path: Path, data_lfw_dir: Path, capsys: pytest.CaptureFixture) -> None:
    # The shared folder holds 5,484 people (also everyone with 1-4 photos): `prepare lfw` keeps the 158 with >= 10.
    out = tmp_path / "lfw-cli"
    code = main(["prepare", "lfw", "--lfw-dir", str(data_lfw_dir), "--image-size", "16", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "prepared 158 identities, 4324 images" in capsys.readouterr().out
    info = json.loads((out / "prepare.json").read_text())
    assert info["parameters"]["min_images"] == 10
    assert info["parameters"]["lfw_variant"] == "deep-funneled" and info["parameters"]["center_crop"] == 0.45
    assert info["dropped"]["identities"] == {"too_few_images": 5484 - 158}
    assert load_prepared(out).identities[0].attributes["gender"] in ("male", "female")


def test_prepare_lfw_finds_data_and_gender_lists(tmp_path: Path, data_lfw_dir: Path) -> None:
    result = prepare_lfw(tmp_path / "lfw", Selection(image_size=16, min_images=10, max_identities=3), lfw_dir=data_lfw_dir)
    dataset = load_prepared(result.root)
    assert dataset.num_identities == 3
    assert dataset.center_crop == 0.45
    assert result.attribute_coverage["gender"] == 3
    assert all(len(dataset.split_indices(s)) > 0 for s in ("train", "test"))


def test_bad_files_are_counted_and_skipped(tmp_path: Path, data_lfw_dir: Path, data_photo_copy: Callable[[Path, Path], Path], data_make_photo: Callable[..., Path]) -> None:
    src = tmp_path / "faces"
    person = next(p for p in sorted(data_lfw_dir.iterdir()) if len(list(p.iterdir())) >= 10)
    photos = sorted(person.iterdir())[:4]
    for photo in photos:
        data_photo_copy(photo, src / "Real_Person" / photo.name)
    (src / "Real_Person" / "corrupt.jpg").write_bytes(b"this is not a jpeg at all")
    (src / "Real_Person" / "truncated.jpg").write_bytes(photos[0].read_bytes()[:3000])
    (src / "Real_Person" / "notes.txt").write_text("not a photo")
    (src / "Empty_Person").mkdir()
    (src / "README").write_text("a stray file")
    grey = Image.fromarray(np.random.default_rng(0).integers(0, 255, size=(50, 40), dtype=np.uint8), mode="L")
    (src / "Grey_Person").mkdir()
    for number in range(3):
        grey.save(src / "Grey_Person" / f"g{number}.pgm")
    data_make_photo(src / "Png_Person" / "a.png", (10, 200, 10))
    rgba = Image.new("RGBA", (30, 30), (250, 0, 0, 128))
    rgba.save(src / "Png_Person" / "b.png")

    result = prepare_folder(src, tmp_path / "out", Selection(image_size=16))
    info = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert info["dropped"]["images"] == {"not_an_image": 1, "truncated_image": 1, "not_an_image_file": 1, "outside_identity_folder": 1}
    assert info["dropped"]["identities"] == {"empty_folder": 1}
    dataset = load_prepared(result.root)
    assert sorted(i.name for i in dataset.identities) == ["Grey_Person", "Png_Person", "Real_Person"]
    grey_sample = next(s for s in dataset.samples if s.source.startswith("Grey_Person/"))
    pixels = np.asarray(Image.open(dataset.root / grey_sample.path))
    assert pixels.shape == (16, 16, 3)
    assert np.abs(pixels[..., 0].astype(int) - pixels[..., 2]).max() <= 3  # greyscale stays grey in RGB


def test_duplicate_identity_names_stop_before_writing(tmp_path: Path, data_make_photo: Callable[..., Path]) -> None:
    data_make_photo(tmp_path / "src" / "John_Smith" / "1.jpg", (1, 2, 3))
    data_make_photo(tmp_path / "src" / "john smith" / "1.jpg", (1, 2, 3))
    with pytest.raises(DataError, match="John_Smith and .*john smith"):
        prepare_folder(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_center_crop_keeps_the_middle(tmp_path: Path) -> None:
    pixels = np.zeros((100, 100, 3), dtype=np.uint8)
    pixels[:] = (0, 0, 255)
    pixels[30:70, 30:70] = (255, 0, 0)  # the middle 40 %
    (tmp_path / "src" / "P").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "src" / "P" / "a.png")
    for fraction, expect_blue in ((0.4, False), (1.0, True)):
        out = tmp_path / f"out{fraction}"
        prepare_folder(tmp_path / "src", out, Selection(image_size=20), center_crop=fraction)
        face = np.asarray(Image.open(out / load_prepared(out).samples[0].path)).astype(int)
        blue = (face[..., 2] > 150) & (face[..., 0] < 100)
        assert blue.any() == expect_blue
        if not expect_blue:
            assert face[..., 0].min() > 200


def test_min_images_per_identity_and_max_identities(tmp_path: Path, data_synthetic_folder: Path, data_make_photo: Callable[..., Path]) -> None:
    src = tmp_path / "src"
    for name, count in (("Few", 2), ("Many", 7), ("Most", 9)):
        for number in range(count):
            data_make_photo(src / name / f"{number}.jpg", (number * 20, 50, 50))
    result = prepare_folder(src, tmp_path / "a", Selection(image_size=8, min_images=3, per_identity=5))
    dataset = load_prepared(result.root)
    assert [i.name for i in dataset.identities] == ["Many", "Most"]
    assert [sum(s.identity == i.id for s in dataset.samples) for i in dataset.identities] == [5, 5]
    assert result.dropped_identities == {"too_few_images": 1}
    one = load_prepared(prepare_folder(src, tmp_path / "b", Selection(image_size=8, min_images=3, max_identities=1)).root)
    assert one.num_identities == 1 and one.identities[0].name in ("Many", "Most")


def test_cli_reports_errors_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["prepare", "folder", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not a directory" in err
    # one error line and no traceback before it
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("facegraph prepare: error: ")
