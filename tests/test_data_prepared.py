"""The prepared-dataset format: reading, validation, atomic writing, determinism, recorded statistics."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegraph.data import Selection, load_prepared, prepare_folder
from facegraph.data.build import assign_splits, parse_split
from facegraph.data.sources import folder as folder_source
from facegraph.errors import DataError


def test_identities_sorted_by_name_with_ids_in_order(data_synthetic_prepared: Path, data_synthetic_folder: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    names = sorted(p.name for p in data_synthetic_folder.iterdir())
    assert [i.name for i in dataset.identities] == names
    assert [i.id for i in dataset.identities] == list(range(len(names)))
    assert dataset.num_identities == len(names)
    for sample in dataset.samples:
        assert sample.source.startswith(dataset.identities[sample.identity].name + "/")
        assert (dataset.root / sample.path).is_file()


def test_split_indices_partition_samples_per_identity(data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    parts = {split: dataset.split_indices(split) for split in ("train", "val", "test")}
    assert sorted(sum(parts.values(), [])) == list(range(len(dataset.samples)))
    for identity in dataset.identities:
        per_split = {split: sum(dataset.samples[i].identity == identity.id for i in indices) for split, indices in parts.items()}
        assert per_split == {"train": 6, "val": 2, "test": 2}
    assert dataset.splits == ["train", "val", "test"]
    with pytest.raises(DataError, match="valid"):
        dataset.split_indices("valid")


def test_split_parsing_and_assignment() -> None:
    assert parse_split("80/20") == {"train": 0.8, "test": 0.2}
    assert parse_split("80/10/10") == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1})
    assert parse_split("0.7/0.3") == pytest.approx({"train": 0.7, "test": 0.3})
    with pytest.raises(DataError):
        parse_split("80")
    for not_100 in ("80/30", "8/1/1", "50/20/10"):
        with pytest.raises(DataError, match=f"split '{not_100}' sums to"):
            parse_split(not_100)
    labels = assign_splits(7, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert labels == ["train"] * 6 + ["test"]  # boundaries at round(5.6)=6, round(6.3)=6, 7
    assert assign_splits(100, parse_split("80/20")).count("train") == 80


def test_same_seed_same_dataset_other_seed_other_split(tmp_path: Path, data_synthetic_folder: Path) -> None:
    manifests = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        prepare_folder(data_synthetic_folder, tmp_path / name, Selection(image_size=8, seed=seed))
        manifests.append([(row[1], row[2], row[3]) for row in csv.reader((tmp_path / name / "manifest.csv").open())])
        assert json.loads((tmp_path / name / "prepare.json").read_text())["seed"] == seed
    assert manifests[0] == manifests[1]
    assert sorted(manifests[0]) != sorted(manifests[2])


def test_normalisation_statistics_are_those_of_the_train_images(data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    pixels = np.concatenate([np.asarray(Image.open(dataset.root / dataset.samples[i].path)).reshape(-1, 3) / 255.0 for i in dataset.split_indices("train")])
    assert dataset.mean == pytest.approx(pixels.mean(axis=0), abs=0.01)
    assert dataset.std == pytest.approx(pixels.std(axis=0), abs=0.01)
    assert dataset.info["normalization"]["computed_on"] == "train"


def test_attribute_codes_index_the_vocabulary(tmp_path: Path, data_synthetic_folder: Path) -> None:
    annotations = tmp_path / "codes.csv"
    annotations.write_text(
        "Label,Skin,Eye,Race,Specs,Facial_Hair,Age,Gender,Name\n0,2,1,5,0,0,30,1,Ann_Able\n1,0,0,0,1,3,60,0,Bob_Baker\n", encoding="utf-8"
    )
    prepare_folder(data_synthetic_folder, tmp_path / "out", Selection(image_size=8), annotations=annotations)
    dataset = load_prepared(tmp_path / "out")
    gender = dataset.attribute_codes("gender")
    expected = {"Ann_Able": 1, "Bob_Baker": 0, "Cid_Cole": -1, "Dee_Dunn": -1}
    assert gender.tolist() == [expected[dataset.identities[s.identity].name] for s in dataset.samples]
    assert dataset.features["age"] == ["<35", "35-45", "45-55", ">55"]
    assert dataset.info["attributes"]["coverage"]["gender"] == 2
    with pytest.raises(DataError, match="young"):
        dataset.attribute_codes("young")


def _copy(prepared: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(prepared, target, ignore=shutil.ignore_patterns("cache"))
    return target


def test_missing_prepare_json_is_not_a_dataset(tmp_path: Path, data_synthetic_prepared: Path) -> None:
    copy = _copy(data_synthetic_prepared, tmp_path)
    (copy / "prepare.json").unlink()
    with pytest.raises(DataError, match="not a prepared dataset"):
        load_prepared(copy)
    with pytest.raises(DataError, match="does not exist"):
        load_prepared(tmp_path / "nowhere")


def test_manifest_row_removed_is_detected(tmp_path: Path, data_synthetic_prepared: Path) -> None:
    copy = _copy(data_synthetic_prepared, tmp_path)
    lines = (copy / "manifest.csv").read_text().splitlines()
    (copy / "manifest.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="altered or is incomplete"):
        load_prepared(copy)


def test_missing_image_names_file_and_line(tmp_path: Path, data_synthetic_prepared: Path) -> None:
    copy = _copy(data_synthetic_prepared, tmp_path)
    third = (copy / "manifest.csv").read_text().splitlines()[3].split(",")[0]
    (copy / third).unlink()
    with pytest.raises(DataError, match=rf"line 4: {third}"):
        load_prepared(copy)


def test_unknown_label_word_names_file_line_column_value(tmp_path: Path, data_synthetic_folder: Path) -> None:
    annotations = tmp_path / "codes.csv"
    annotations.write_text("Label,Gender,Name\n0,1,Ann_Able\n", encoding="utf-8")
    prepare_folder(data_synthetic_folder, tmp_path / "out", Selection(image_size=8), annotations=annotations)
    path = tmp_path / "out" / "identities.csv"
    path.write_text(path.read_text().replace("female", "femme"))
    with pytest.raises(DataError) as raised:
        load_prepared(tmp_path / "out")
    assert all(part in str(raised.value) for part in (str(path), "line 2", "column gender", "'femme'"))


def _edit_info(root: Path, edit: dict) -> Path:
    path = root / "prepare.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    for dotted, value in edit.items():
        *sections, key = dotted.split(".")
        node = info
        for section in sections:
            node = node[section]
        node[key] = value
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


# (edit of prepare.json, what the error must name): the key and the value as found in the file.
BAD_INFO = [
    ({"normalization": {}}, ["'normalization.mean' is missing"]),
    ({"normalization.mean": [0.5]}, ["normalization.mean is [0.5]", "three finite numbers"]),
    ({"normalization.mean": [0.5, float("nan"), 0.5]}, ["normalization.mean is [0.5, nan, 0.5]"]),
    ({"normalization.std": [0.2, 0.0, 0.2]}, ["normalization.std is [0.2, 0.0, 0.2]", "each > 0"]),
    ({"normalization.std": "0.5"}, ["normalization.std is '0.5'"]),
    ({"normalization": [0.5, 0.5]}, ["normalization is [0.5, 0.5]", "a mapping"]),
    ({"image_size": "32px"}, ["image_size is '32px'", "positive whole number"]),
    ({"image_size": 0}, ["image_size is 0"]),
    ({"image_size": True}, ["image_size is True"]),
    ({"image_size": 16.5}, ["image_size is 16.5"]),
    ({"features": ["gender"]}, ["features is ['gender']", "a mapping"]),
    ({"features": {"gender": "female"}}, ["features.gender is 'female'", "a list of label strings"]),
    ({"features": {"gender": ["female", 1]}}, ["features.gender is ['female', 1]"]),
    ({"counts": 5}, ["counts is 5", "a mapping"]),
    ({"counts": {"images": 20}}, ["'counts.identities' is missing"]),
    ({"counts.identities": "4"}, ["counts.identities is '4'", "a whole number"]),
    ({"parameters": []}, ["parameters is []"]),
    ({"parameters.center_crop": "wide"}, ["parameters.center_crop is 'wide'", "(0, 1]"]),
    ({"parameters.center_crop": 1.5}, ["parameters.center_crop is 1.5"]),
]


@pytest.mark.parametrize(("edit", "expected"), BAD_INFO, ids=[json.dumps(edit) for edit, _ in BAD_INFO])
def test_malformed_prepare_json_names_file_key_and_value(tmp_path: Path, data_synthetic_prepared: Path, edit: dict,
                                                         expected: list[str]) -> None:
    path = _edit_info(_copy(data_synthetic_prepared, tmp_path), edit)
    with pytest.raises(DataError) as raised:
        load_prepared(path.parent)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert all(part in message for part in expected), message


def test_manifest_identity_of_non_ascii_digits_names_file_line_and_value(tmp_path: Path, data_synthetic_prepared: Path) -> None:
    copy = _copy(data_synthetic_prepared, tmp_path)
    path = copy / "manifest.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    image, _, *rest = lines[2].split(",")
    lines[2] = ",".join([image, "\u00b2", *rest])  # '²': str.isdigit() accepts it, int() does not
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_prepared(copy)
    assert all(part in str(raised.value) for part in (str(path), "line 3", "column identity", "'\u00b2'"))


def test_a_staging_folder_with_a_non_ascii_digit_suffix_is_removed_as_stale(tmp_path: Path, data_synthetic_folder: Path) -> None:
    stale = tmp_path / "out.partial-\u00b2"
    stale.mkdir()
    prepare_folder(data_synthetic_folder, tmp_path / "out", Selection(image_size=8, max_identities=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_interrupted_prepare_leaves_nothing_that_looks_complete(tmp_path: Path, data_synthetic_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = folder_source.cut_face

    def interrupted(*args: object, **kwargs: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(folder_source, "cut_face", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_folder(data_synthetic_folder, tmp_path / "out", Selection(image_size=8, workers=2))
    assert calls["n"] >= 12
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="does not exist"):
        load_prepared(tmp_path / "out")


def test_existing_output_needs_overwrite_which_replaces_it(tmp_path: Path, data_synthetic_folder: Path) -> None:
    prepare_folder(data_synthetic_folder, tmp_path / "out", Selection(image_size=8, max_identities=1))
    with pytest.raises(DataError, match="--overwrite"):
        prepare_folder(data_synthetic_folder, tmp_path / "out", Selection(image_size=8))
    prepare_folder(data_synthetic_folder, tmp_path / "out", Selection(image_size=8), overwrite=True)
    assert load_prepared(tmp_path / "out").num_identities == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("seed", [0, 1])
def test_cross_validation_folds_partition_every_person(data_synthetic_prepared: Path, seed: int) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    folds = 3
    views = [dataset.cross_validation_fold(folds, fold, seed) for fold in range(folds)]
    tested = [{s.path for s in view.samples if s.split == "test"} for view in views]
    # Every photo is tested exactly once over the folds, and trained on in every other fold.
    assert sorted(p for t in tested for p in t) == sorted(s.path for s in dataset.samples)
    for view, test_paths in zip(views, tested):
        assert view.splits == ["train", "test"] and view.info["cross_validation"]["folds"] == folds
        assert {s.path for s in view.samples if s.split == "train"} == {s.path for s in dataset.samples} - test_paths
    # Each person's photos are dealt evenly: the folds hold the same number of a person's photos, give or take one.
    for identity in range(dataset.num_identities):
        counts = [sum(1 for s in view.samples if s.identity == identity and s.split == "test") for view in views]
        assert max(counts) - min(counts) <= 1 and sum(counts) > 0
    sizes = [len(t) for t in tested]
    assert max(sizes) - min(sizes) <= 1
    # The dealing is fixed by the seed: the same fold twice is the same split, whatever else ran in between; another
    # seed deals another partition.
    assert [s.split for s in dataset.cross_validation_fold(folds, 1, seed).samples] == \
        [s.split for s in views[1].samples]
    other = [{s.path for s in dataset.cross_validation_fold(folds, fold, seed + 1).samples if s.split == "test"}
             for fold in range(folds)]
    assert other != tested and views[0].info["cross_validation"]["seed"] == seed


def test_fold_seed_0_is_the_dealing_runs_made_before_the_seed_existed(data_synthetic_prepared: Path) -> None:
    """Earlier runs recorded no fold seed and are reused as seed 0: seed 0 must deal as the unseeded code did, with
    numpy's generator seeded by (photos, folds)."""
    dataset = load_prepared(data_synthetic_prepared)
    folds = 3
    rng = np.random.default_rng([len(dataset.samples), folds])
    by_identity: dict[int, list[int]] = {}
    for index, sample in enumerate(dataset.samples):
        by_identity.setdefault(sample.identity, []).append(index)
    photos = by_identity[min(by_identity)]  # the first person: dealt first, so at offset 0
    assert len(photos) >= 2 * folds
    views = [dataset.cross_validation_fold(folds, fold) for fold in range(folds)]
    for position, index in enumerate(rng.permutation(len(photos))):
        assert views[position % folds].samples[photos[index]].split == "test"
    assert dataset.cross_validation_fold(folds, 0, 1).samples != views[0].samples


@pytest.mark.parametrize("folds, fold, seed", [(1, 0, 0), (3, 3, 0), (3, -1, 0), (3, 0, -1)])
def test_cross_validation_fold_out_of_range(data_synthetic_prepared: Path, folds: int, fold: int, seed: int) -> None:
    with pytest.raises(DataError, match=f"got fold {fold} of {folds}, seed {seed}"):
        load_prepared(data_synthetic_prepared).cross_validation_fold(folds, fold, seed)
