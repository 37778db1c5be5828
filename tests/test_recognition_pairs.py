"""The LFW pairs reader (view 1 and view 2 formats, every format error by line), availability and sampled pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from facegraph.errors import ConfigError, DataError
from facegraph.recognition import Pair, read_lfw_pairs, sample_pairs, split_available

# Two folds of two matched and two mismatched pairs; tabs and spaces mixed on purpose.
VIEW2 = """2\t2
Ann_Able\t1\t2
Bob_Baker 3 12
Ann_Able\t1\tBob_Baker\t2
Cid_Cole  4  Dee_Dunn  1
Cid_Cole\t1\t3
Dee_Dunn\t2\t10
Ann_Able\t2\tCid_Cole\t1
Bob_Baker\t1\tDee_Dunn\t2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


def test_view2_pairs_are_read_with_folds_paths_and_labels(tmp_path: Path) -> None:
    pairs = read_lfw_pairs(write(tmp_path, VIEW2 + "\n\n"))
    assert len(pairs) == 8
    assert pairs[0] == Pair("Ann_Able/Ann_Able_0001.jpg", "Ann_Able/Ann_Able_0002.jpg", True, 0)
    assert pairs[1].second == "Bob_Baker/Bob_Baker_0012.jpg"
    assert pairs[3] == Pair("Cid_Cole/Cid_Cole_0004.jpg", "Dee_Dunn/Dee_Dunn_0001.jpg", False, 0)
    assert [pair.fold for pair in pairs] == [0] * 4 + [1] * 4
    assert [pair.same for pair in pairs] == [True, True, False, False] * 2


def test_view1_single_number_header_is_one_fold(tmp_path: Path) -> None:
    pairs = read_lfw_pairs(write(tmp_path, "1\nAnn_Able\t1\t2\nAnn_Able\t1\tBob_Baker\t1\n"))
    assert [(pair.same, pair.fold) for pair in pairs] == [(True, 0), (False, 0)]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("2 two\n", 1, "header"),
        ("1 1 1\n", 1, "header"),
        ("1 1\nAnn_Able\t1\nAnn_Able\t1\tBob_Baker\t1\n", 2, "3 fields"),
        ("1 1\nAnn_Able\t1\t2\nAnn_Able\t1\tBob_Baker\n", 3, "4 fields"),
        ("1 1\nAnn_Able\t1\tx2\nAnn_Able\t1\tBob_Baker\t1\n", 2, "'x2'"),
        ("1 1\nAnn_Able\t1\t2\nAnn_Able\t0\tBob_Baker\t1\n", 3, "'0'"),
        ("1 1\nAnn_Able\t1\t2\nAnn_Able\t1\tAnn_Able\t3\n", 3, "same person"),
        ("1 1\nAnn_Able\t1\t2\n\nAnn_Able\t1\tBob_Baker\t1\n", 3, "4 fields"),
        ("1 1\nAnn_Able\t1\t2\nAnn_Able\t1\tBob_Baker\t1\nBob_Baker\t1\t2\n", 4, "extra line"),
    ],
)
def test_format_errors_name_file_line_and_text(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        read_lfw_pairs(path)
    message = str(caught.value)
    assert f"{path}, line {line}:" in message
    assert fragment in message
    assert "\n" not in message


def test_fewer_lines_than_the_header_promises(tmp_path: Path) -> None:
    path = write(tmp_path, VIEW2.replace("Bob_Baker\t1\tDee_Dunn\t2\n", ""))
    with pytest.raises(DataError, match=r"line 9: the file ends after 7 pair lines; .* promises 8 pairs"):
        read_lfw_pairs(path)


def test_missing_and_empty_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_lfw_pairs(tmp_path / "absent.txt")
    with pytest.raises(DataError, match="empty"):
        read_lfw_pairs(write(tmp_path, "\n"))


def test_split_available_separates_pairs_with_a_missing_image(tmp_path: Path) -> None:
    for relative in ("Ann_Able/Ann_Able_0001.jpg", "Ann_Able/Ann_Able_0002.jpg", "Bob_Baker/Bob_Baker_0001.jpg"):
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        (tmp_path / relative).write_bytes(b"jpeg")
    complete = Pair("Ann_Able/Ann_Able_0001.jpg", "Ann_Able/Ann_Able_0002.jpg", True, 0)
    half = Pair("Ann_Able/Ann_Able_0001.jpg", "Cid_Cole/Cid_Cole_0001.jpg", False, 0)
    none = Pair("Cid_Cole/Cid_Cole_0001.jpg", "Dee_Dunn/Dee_Dunn_0001.jpg", False, 1)
    kept, missing = split_available([complete, half, none], tmp_path)
    assert kept == [complete]
    assert missing == [half, none]


def test_real_lfw_pairs(data_root: Path) -> None:
    pairs_file = data_root / "lfw" / "pairs.txt"
    if not pairs_file.is_file():
        pytest.skip(f"{pairs_file} is absent")
    pairs = read_lfw_pairs(pairs_file)
    assert len(pairs) == 6000
    assert Counter((pair.fold, pair.same) for pair in pairs) == {(fold, same): 300 for fold in range(10) for same in (True, False)}
    for pair in pairs:
        first_person, second_person = pair.first.split("/")[0], pair.second.split("/")[0]
        assert (first_person == second_person) == pair.same
    images = data_root / "lfw" / "lfw-deepfunneled"
    if not images.is_dir():
        pytest.skip(f"{images} is absent")
    kept, missing = split_available(pairs, images)
    assert (len(kept), len(missing)) == (4963, 1037)
    assert all((images / pair.first).is_file() and (images / pair.second).is_file() for pair in kept)


def labelled_images(counts: dict[str, int]) -> tuple[list[str], list[str]]:
    paths, identities = [], []
    for person, count in counts.items():
        for number in range(count):
            paths.append(f"{person}/{number}.jpg")
            identities.append(person)
    return paths, identities


def test_sampled_pairs_are_balanced_distinct_fold_disjoint_and_seeded() -> None:
    counts = {f"p{index:02d}": 1 + index % 5 for index in range(40)}
    paths, identities = labelled_images(counts)
    pairs = sample_pairs(paths, identities, num_pairs=80, seed=7, folds=4)
    assert Counter((pair.fold, pair.same) for pair in pairs) == {(fold, same): 10 for fold in range(4) for same in (True, False)}
    assert len({frozenset((pair.first, pair.second)) for pair in pairs}) == 80
    person_folds: dict[str, set[int]] = {}
    for pair in pairs:
        first, second = pair.first.split("/")[0], pair.second.split("/")[0]
        assert (first == second) == pair.same
        assert pair.first != pair.second
        person_folds.setdefault(first, set()).add(pair.fold)
        person_folds.setdefault(second, set()).add(pair.fold)
    assert all(len(folds) == 1 for folds in person_folds.values())
    assert sample_pairs(paths, identities, num_pairs=80, seed=7, folds=4) == pairs
    assert sample_pairs(paths, identities, num_pairs=80, seed=8, folds=4) != pairs


def test_sampling_refuses_what_the_images_cannot_give() -> None:
    paths, identities = labelled_images({"a": 2, "b": 1, "c": 1})
    with pytest.raises(DataError, match="2\\+ images"):
        sample_pairs(paths, identities, num_pairs=4, seed=0, folds=2)
    with pytest.raises(DataError, match="only 1 distinct matched"):
        sample_pairs(paths, identities, num_pairs=4, seed=0, folds=1)
    with pytest.raises(ConfigError, match="multiple"):
        sample_pairs(paths, identities, num_pairs=3, seed=0, folds=1)
    with pytest.raises(DataError, match="identities"):
        sample_pairs(paths, identities[:-1], num_pairs=2, seed=0, folds=1)


def test_text_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_bytes(b"1 1\nJos\xe9_Able\t1\t2\nAnn_Able\t1\tBob_Baker\t1\n")
    with pytest.raises(DataError, match=r"line 2: not UTF-8"):
        read_lfw_pairs(path)
