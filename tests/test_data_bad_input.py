"""Bad input to `facegraph prepare` (issue 9, data side): outputs that overlap an input, text that is not UTF-8,
unreadable or unwritable folders, out-of-range options, and the help every source shows. Small fixtures made here.

Every refusal is one line, exit code 2 from the CLI, and nothing is written."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from facegraph.cli import main
from facegraph.cli import prepare as prepare_cli
from facegraph.data import Selection, load_prepared, prepare_celeba, prepare_folder, prepare_imdb_face, prepare_imdb_face_lists
from facegraph.data.attributes import read_coded_annotations
from facegraph.errors import DataError

LATIN1_NAME = "Penélope_Cruz".encode("latin-1")
ANNOTATION_HEADER = b"Label,Skin,Eye,Race,Specs,Facial_Hair,Age,Gender,Name\n"


@pytest.fixture
def photo_folder(tmp_path: Path, data_make_photo: Callable[..., Path]) -> Path:
    """photos/<person>/<n>.jpg: two people x 3 photos."""
    root = tmp_path / "photos"
    for person, name in enumerate(("Ann_Able", "Bob_Baker")):
        for number in range(3):
            data_make_photo(root / name / f"{number}.jpg", (80 * person, 100, 60), noise_seed=10 * person + number)
    return root


@pytest.fixture
def celeba_root(tmp_path: Path, data_make_photo: Callable[..., Path]) -> Path:
    root = tmp_path / "celeba"
    lines = []
    for number in range(1, 5):
        image = f"{number:06d}.jpg"
        data_make_photo(root / "img_align_celeba" / image, (20 * number, 90, 90))
        lines.append(f"{image} {1 + number % 2}")
    (root / "identity_CelebA.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(["prepare", *argv, "--no-progress"])
    err = capsys.readouterr().err
    return code, err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- (a) an output that overlaps an input is refused before anything is written ---------------------------


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_folder_out_overlapping_the_photos_is_refused_even_with_overwrite(tmp_path: Path, photo_folder: Path, where: str, capsys) -> None:
    out = {"same": photo_folder, "inside": photo_folder / "Ann_Able" / "prepared", "contains": tmp_path}[where]
    before = _files(photo_folder)
    code, err = _cli(["folder", str(photo_folder), "--out", str(out), "--overwrite", "--image-size", "8"], capsys)
    assert code == 2
    line = _one_line_error(err)
    assert {"same": "is the input", "inside": "lies inside the input folder", "contains": "contains the input"}[where] in line
    assert _files(photo_folder) == before
    assert not list(tmp_path.rglob("*.partial-*")) and not (photo_folder / "Ann_Able" / "prepared").exists()


def test_lfw_out_equal_to_the_lfw_folder_is_refused(photo_folder: Path, capsys) -> None:
    before = _files(photo_folder)
    code, err = _cli(["lfw", "--lfw-dir", str(photo_folder), "--out", str(photo_folder), "--overwrite"], capsys)
    assert code == 2 and "is the input" in _one_line_error(err)
    assert _files(photo_folder) == before


def test_celeba_out_equal_to_or_inside_the_root_is_refused(celeba_root: Path) -> None:
    before = _files(celeba_root)
    for out in (celeba_root, celeba_root / "prepared", celeba_root / "img_align_celeba"):
        with pytest.raises(DataError, match="is the input|lies inside the input"):
            prepare_celeba(celeba_root, out, Selection(image_size=8), overwrite=True)
    assert _files(celeba_root) == before


def test_imdb_face_out_containing_the_index_or_its_download_cache_is_refused(tmp_path: Path) -> None:
    index = tmp_path / "imdb" / "IMDb-Face.csv"
    index.parent.mkdir()
    index.write_text("name,index,image,rect,height width,url\nA,nm1,1.jpg,1 1 9 9,10 10,http://127.0.0.1:9/1.jpg\n", encoding="utf-8")
    with pytest.raises(DataError, match="contains the input"):
        prepare_imdb_face(index, tmp_path / "imdb", overwrite=True)
    with pytest.raises(DataError, match="contains the input"):
        prepare_imdb_face(index, tmp_path / "out", download_dir=tmp_path / "out" / "downloads")
    assert index.is_file() and not (tmp_path / "out").exists()


def test_imdb_face_lists_out_equal_to_the_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "keep.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="is the input"):
        prepare_imdb_face_lists(tmp_path / "splits", tmp_path / "images", tmp_path / "images", overwrite=True)
    assert (tmp_path / "images" / "keep.jpg").read_bytes() == b"x"


def test_a_sibling_output_with_a_shared_prefix_is_allowed(tmp_path: Path, photo_folder: Path) -> None:
    # photos-prepared is beside photos, not inside it: a string-prefix check would refuse it wrongly.
    result = prepare_folder(photo_folder, tmp_path / "photos-prepared", Selection(image_size=8))
    assert load_prepared(result.root).num_identities == 2


# --- (b) text that is not UTF-8 ------------------------------------------------------------------------------


def test_person_folder_name_not_utf8_is_one_line_naming_the_folder(tmp_path: Path, photo_folder: Path, data_make_photo, capsys) -> None:
    bad = os.fsdecode(os.fsencode(photo_folder) + b"/" + LATIN1_NAME)
    data_make_photo(Path(bad) / "1.jpg", (1, 2, 3))
    code, err = _cli(["folder", str(photo_folder), "--out", str(tmp_path / "out")], capsys)
    line = _one_line_error(err)
    assert code == 2 and "Pen\\udce9lope_Cruz" in line and "not UTF-8" in line
    assert not (tmp_path / "out").exists()


def test_photo_file_name_not_utf8_is_skipped_and_counted(tmp_path: Path, photo_folder: Path) -> None:
    bad = os.fsdecode(os.fsencode(photo_folder / "Ann_Able") + b"/" + LATIN1_NAME + b".jpg")
    (photo_folder / "Ann_Able" / "0.jpg").rename(bad)
    result = prepare_folder(photo_folder, tmp_path / "out", Selection(image_size=8))
    assert result.dropped_images == {"name_not_utf8": 1}
    assert result.images == 5


def test_latin1_celeba_identity_file_names_file_and_line(tmp_path: Path, celeba_root: Path) -> None:
    path = celeba_root / "identity_CelebA.txt"
    path.write_bytes(b"000001.jpg 1\n" + LATIN1_NAME + b".jpg 2\n")
    with pytest.raises(DataError, match=r"identity_CelebA.txt, line 2: not UTF-8 text \(byte 0xe9 at column 4\)"):
        prepare_celeba(celeba_root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_latin1_imdb_face_index_names_file_and_line(tmp_path: Path) -> None:
    index = tmp_path / "IMDb-Face.csv"
    rows = [b"name,index,image,rect,height width,url", b"Ann,nm1,1.jpg,1 1 9 9,10 10,http://127.0.0.1:9/1.jpg",
            LATIN1_NAME + b",nm2,2.jpg,1 1 9 9,10 10,http://127.0.0.1:9/2.jpg"]
    index.write_bytes(b"\r\n".join(rows) + b"\r\n")
    with pytest.raises(DataError, match=r"IMDb-Face.csv, line 3: not UTF-8 text"):
        prepare_imdb_face(index, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_latin1_annotations_and_split_list_name_file_and_line(tmp_path: Path) -> None:
    annotations = tmp_path / "manual_annotations.csv"
    annotations.write_bytes(ANNOTATION_HEADER + b"1,2,1,5,0,0,40,0,Ann\n2,2,1,5,0,0,40,1," + LATIN1_NAME + b"\n")
    with pytest.raises(DataError, match=r"manual_annotations.csv, line 3: not UTF-8"):
        read_coded_annotations(annotations)
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train_labels.csv").write_bytes(b"images/train/1.jpg, " + LATIN1_NAME + b", 1\n")
    for split in ("val", "test"):
        (splits / f"{split}_labels.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"train_labels.csv, line 1: not UTF-8"):
        prepare_imdb_face_lists(splits, tmp_path / "authors", tmp_path / "out")


# --- (c) unreadable and unwritable places -----------------------------------------------------------------


def test_unreadable_person_folder_is_one_line(tmp_path: Path, photo_folder: Path, monkeypatch, capsys) -> None:
    locked = photo_folder / "Bob_Baker"
    real_iterdir = Path.iterdir

    def iterdir(self: Path):  # noqa: ANN202 (as os.listdir fails on a folder without read permission)
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    code, err = _cli(["folder", str(photo_folder), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"cannot read identity folder {locked}: Permission denied" in _one_line_error(err)


# Root reads and writes through permission bits by its capabilities: as root (CI), the CLI runs without them.
ROOT_WITHOUT_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def _prepare_obeying_permissions(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """`facegraph prepare` as a process that permission bits bind: in-process for a user, or, as root, in a
    subprocess that dropped the capabilities that override them."""
    if os.geteuid() != 0:
        return _cli(argv, capsys)
    if shutil.which(ROOT_WITHOUT_OVERRIDE[0]) is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop the capabilities that override "
                    "permission bits")
    probe = subprocess.run([*ROOT_WITHOUT_OVERRIDE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:  # e.g. a container that may not change its capability bounding set
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.strip()}")
    done = subprocess.run([*ROOT_WITHOUT_OVERRIDE, sys.executable, "-m", "facegraph", "prepare", *argv, "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


def test_real_permission_bits(tmp_path: Path, photo_folder: Path, capsys) -> None:
    locked = photo_folder / "Bob_Baker"
    locked.chmod(0)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        code, err = _prepare_obeying_permissions(["folder", str(photo_folder), "--out", str(tmp_path / "out")], capsys)
        assert code == 2 and f"cannot read identity folder {locked}" in _one_line_error(err)
        locked.chmod(0o755)
        code, err = _prepare_obeying_permissions(["folder", str(photo_folder), "--out", str(readonly / "out")], capsys)
        assert code == 2 and "is not writable" in _one_line_error(err)
        assert list(readonly.iterdir()) == []
    finally:
        locked.chmod(0o755)
        readonly.chmod(0o755)


def test_out_under_a_read_only_folder_is_one_line(tmp_path: Path, photo_folder: Path, monkeypatch, capsys) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == readonly else real_access(path, mode, **kw))
    code, err = _cli(["folder", str(photo_folder), "--out", str(readonly / "deeper" / "out")], capsys)
    assert code == 2 and f"cannot create output {readonly / 'deeper' / 'out'}: {readonly} is not writable" in _one_line_error(err)
    assert list(readonly.iterdir()) == []


def test_out_under_a_file_or_equal_to_a_file_is_one_line(tmp_path: Path, photo_folder: Path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code, err = _cli(["folder", str(photo_folder), "--out", str(a_file / "out")], capsys)
    assert code == 2 and f"{a_file} is a file, not a folder" in _one_line_error(err)
    code, err = _cli(["folder", str(photo_folder), "--out", str(a_file), "--overwrite"], capsys)
    assert code == 2 and "is an existing file" in _one_line_error(err)
    assert a_file.read_text() == "mine"


# --- (d) numeric options and the split are range-checked --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--seed", "-1"], "argument --seed: -1 is out of range"),
        (["--split", "80/30"], "split '80/30' sums to 110"),
        (["--image-size", "0"], "argument --image-size: 0 is out of range"),
        (["--min-images", "0"], "argument --min-images: 0 is out of range"),
        (["--workers", "x"], "argument --workers: 'x' is not an integer"),
        (["--center-crop", "0"], "argument --center-crop: 0 is out of range"),
        (["--center-crop", "1.5"], "argument --center-crop: 1.5 is out of range"),
    ],
)
def test_folder_options_out_of_range_are_refused(tmp_path: Path, photo_folder: Path, argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["prepare", "folder", str(photo_folder), "--out", str(tmp_path / "out"), *argv])
    assert raised.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "expected"), [(["--timeout", "0"], "--timeout: 0 is out of range"), (["--retries", "-1"], "--retries: -1 is out of range"),
                                                (["--backoff", "-0.5"], "--backoff: -0.5 is out of range")])
def test_imdb_face_http_options_out_of_range_are_refused(tmp_path: Path, argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["prepare", "imdb-face", "--csv", str(tmp_path / "x.csv"), "--out", str(tmp_path / "out"), *argv])
    assert expected in capsys.readouterr().err


def test_imdb_face_aspect_ratio_low_above_high_is_refused(tmp_path: Path, capsys) -> None:
    code, err = _cli(["imdb-face", "--csv", str(tmp_path / "x.csv"), "--out", str(tmp_path / "out"), "--aspect-ratio", "1.2", "0.8"], capsys)
    assert code == 2 and "LOW must not exceed HIGH" in _one_line_error(err)


def test_library_selection_refuses_a_negative_seed_and_a_split_not_summing_to_one() -> None:
    with pytest.raises(DataError, match="seed -1"):
        Selection(seed=-1)
    with pytest.raises(DataError, match="sum to 1"):
        Selection(split={"train": 0.8, "test": 0.3})


def test_lfw_with_a_missing_folder_is_one_line(tmp_path: Path, capsys) -> None:
    code, err = _cli(["lfw", "--lfw-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "is not a directory" in _one_line_error(err)


# --- (e) help: every option says what it does and its default; every source has examples ------------------


def _source_parsers() -> dict[str, argparse.ArgumentParser]:
    root = argparse.ArgumentParser(prog="facegraph")
    prepare_cli.add_parser(root.add_subparsers())
    prepare = root._subparsers._group_actions[0].choices["prepare"]  # noqa: SLF001 (argparse keeps them there)
    return dict(prepare._subparsers._group_actions[0].choices)  # noqa: SLF001


def test_every_prepare_option_has_help_with_its_default() -> None:
    parsers = _source_parsers()
    assert sorted(parsers) == ["celeba", "folder", "imdb-face", "lfw"]
    for name, parser in parsers.items():
        for action in parser._actions:  # noqa: SLF001
            if isinstance(action, argparse._HelpAction) or not action.option_strings:  # noqa: SLF001
                continue
            if action.option_strings == ["-v", "--verbose"]:  # every command's switch, off unless given
                continue
            assert action.help, f"prepare {name} {action.option_strings[0]} has no help"
            assert "default" in action.help or "required" in action.help, f"prepare {name} {action.option_strings[0]}: {action.help!r} shows no default"


@pytest.mark.parametrize("source", ["folder", "lfw", "celeba", "imdb-face"])
def test_every_prepare_source_help_has_examples(source: str, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["prepare", source, "--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"facegraph prepare {source} " in text.split("examples:")[1]
    flowing = " ".join(text.split())  # argparse wraps option help at the terminal width
    assert "(default 128)" in flowing and "(default 80/20)" in flowing
