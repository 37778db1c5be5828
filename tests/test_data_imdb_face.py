"""`facegraph prepare imdb-face`: the official index format, the paper's selection, downloads against a loopback
server serving real photos with every fault injected, resuming, and the authors' split lists."""

from __future__ import annotations

import csv
from collections import Counter
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegraph.cli import main
from facegraph.data import Selection, load_prepared, prepare_imdb_face, prepare_imdb_face_lists
from facegraph.data.images import FaceCrop, UnusableImage, cut_face
from facegraph.data.sources import imdb_face
from facegraph.data.sources.download import HttpOptions
from facegraph.data.sources.imdb_face import iter_index, read_split_lists, scan_index
from facegraph.errors import DataError

HEADER = ["name", "index", "image", "rect", "height width", "url"]
FAST_HTTP = HttpOptions(timeout=0.4, retries=1, backoff=0.01)
ROWS = [
    ["Ann_Able", "nm001", "1.jpg", "10 20 110 130", "250 250", "http://example.org/a,1.jpg"],
    ["Bob_Baker", "nm002", "2.jpg", "0 0 50 60", "100 200", "https://example.org/b.jpg"],
]


def _write(path: Path, rows: list[list[str]], *, delimiter: str, newline: str, bom: bool, header: list[str] | None = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator=newline)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def read_index(path: Path) -> tuple[list, Counter]:
    """Every row of an index and the malformed-row counts."""
    dropped: Counter = Counter()
    return list(iter_index(path, dropped)), dropped


@pytest.mark.parametrize(("delimiter", "newline", "bom"), [("\t", "\r\n", True), (",", "\n", False), (",", "\r\n", True), ("\t", "\n", False)])
def test_index_formats_read_the_same_rows(tmp_path: Path, delimiter: str, newline: str, bom: bool) -> None:
    rows, dropped = read_index(_write(tmp_path / "IMDb-Face.csv", ROWS, delimiter=delimiter, newline=newline, bom=bom))
    assert not dropped
    assert [(r.name, r.imdb_id, r.box, r.frame, r.url) for r in rows] == [
        ("Ann_Able", "nm001", (10.0, 20.0, 110.0, 130.0), (250, 250), "http://example.org/a,1.jpg"),
        ("Bob_Baker", "nm002", (0.0, 0.0, 50.0, 60.0), (100, 200), "https://example.org/b.jpg"),
    ]


def test_headerless_index_without_size_column(tmp_path: Path) -> None:
    row = ["Terence_Bernie_Hines", "nm0385722", "14.jpg", "127 113 209 190", "http://example.org/t.jpg"]
    rows, _ = read_index(_write(tmp_path / "i.csv", [row], delimiter="\t", newline="\n", bom=False, header=None))
    assert rows[0].box == (127.0, 113.0, 209.0, 190.0) and rows[0].frame is None


def test_malformed_rows_are_counted_and_a_bad_header_stops(tmp_path: Path) -> None:
    bad = [["X", "nm1", "1.jpg", "1 2 3", "10 10", "http://e/1"], ["Y", "nm2", "2.jpg", "5 5 1 1", "10 10", "http://e/2"], ["Z", "nm3"], ["W", "nm4", "4.jpg", "1 1 5 5", "ten", "http://e/4"]]
    rows, dropped = read_index(_write(tmp_path / "i.csv", ROWS + bad, delimiter=",", newline="\n", bom=False))
    assert len(rows) == 2 and dropped == {"malformed_row": 4}
    with pytest.raises(DataError, match="line 1"):
        read_index(_write(tmp_path / "h.csv", ROWS, delimiter=",", newline="\n", bom=False, header=["who", "what"]))


def test_aspect_ratio_filter_bounds(tmp_path: Path) -> None:
    rows = [[f"P{n}", "nm1", "x.jpg", f"0 0 {w} 100", "500 500", f"http://e/{n}"] for n, w in enumerate((74, 75, 100, 125, 126))]
    source = scan_index(_write(tmp_path / "i.csv", rows, delimiter=",", newline="\n", bom=False), download_dir=tmp_path / "dl")
    assert sorted(source.candidates) == ["P1", "P2", "P3"]
    assert source.dropped_images == {"aspect_ratio": 2}


def test_box_is_in_the_coordinates_of_the_declared_size() -> None:
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)  # 200 wide, 100 high: left half red, right half blue
    pixels[:, :100] = (255, 0, 0)
    pixels[:, 100:] = (0, 0, 255)
    photo = Image.fromarray(pixels)
    # The index says the photo is 50 x 100 (height width); the box is the right half there.
    face = cut_face(photo, FaceCrop(box=(55, 5, 95, 45), box_frame=(50, 100)), 8, "photo")
    assert face[..., 2].min() > 200 and face[..., 0].max() < 50
    with pytest.raises(UnusableImage) as raised:
        cut_face(photo, FaceCrop(box=(60, 5, 110, 45), box_frame=(50, 100)), 8, "photo")
    assert raised.value.reason == "box_outside_photo"


def _photos(data_lfw_dir: Path, count: int) -> list[bytes]:
    people = [p for p in sorted(data_lfw_dir.iterdir()) if p.is_dir()]
    return [sorted(person.iterdir())[0].read_bytes() for person in people[:count]]


BOX = "60 60 190 190"


@pytest.fixture
def faulty_index(tmp_path: Path, data_lfw_dir: Path, data_http_server) -> tuple[Path, object]:
    """An index of real LFW photos on the loopback server, with every fault injected."""
    server = data_http_server
    photos = _photos(data_lfw_dir, 14)
    rows: list[list[str]] = []

    def row(name: str, path: str, behaviour, *, rect: str = BOX, size: str = "250 250") -> None:
        server.routes[path] = behaviour
        rows.append([name, "nm" + name.lower(), path.rsplit("/", 1)[-1], rect, size, server.url(path)])

    for n in range(4):
        row("Alpha", f"/ok/alpha{n}.jpg", server.body(photos[n]))
    row("Alpha", "/fault/404.jpg", server.status(404))
    row("Alpha", "/fault/500.jpg", server.status(500))
    row("Alpha", "/fault/slow.jpg", server.slow(2.0, photos[0]))
    row("Alpha", "/fault/reset.jpg", server.reset())
    row("Alpha", "/fault/html.jpg", server.body(b"<html><body>Not found</body></html>", "text/html"))
    row("Alpha", "/fault/truncated.jpg", server.body(photos[1][: len(photos[1]) // 2]))
    row("Alpha", "/fault/short.jpg", server.short_body(photos[2]))
    row("Alpha", "/fault/outside-dynamic.jpg", server.body(photos[3]), rect="100 100 300 300", size="")
    row("Alpha", "/fault/outside-static.jpg", server.body(photos[3]), rect="100 100 300 300")
    row("Alpha", "/ok/flaky.jpg", server.flaky(1, photos[4]))
    row("Alpha", "/fault/aspect.jpg", server.body(photos[4]), rect="0 0 100 200")
    for n in range(4):
        row("Beta", f"/ok/beta{n}.jpg", server.body(photos[5 + n]))
    row("Gamma", "/ok/gamma0.jpg", server.body(photos[9]))
    for n in range(3):
        row("Gamma", f"/gone/gamma{n}.jpg", server.status(404))
    for n in range(3):
        row("Delta", f"/ok/delta{n}.jpg", server.body(photos[10 + n]))
    rows.append(["Alpha", "nmalpha", "bad.jpg", "1 2 3", "250 250", server.url("/never")])
    return _write(tmp_path / "IMDb-Face.csv", rows, delimiter="\t", newline="\r\n", bom=True), server


def test_loopback_download_counts_every_fault_and_resumes(tmp_path: Path, faulty_index) -> None:
    index, server = faulty_index
    selection = Selection(image_size=16, min_images=4, workers=6)
    result = prepare_imdb_face(index, tmp_path / "out", selection, download_dir=tmp_path / "dl", http=FAST_HTTP)
    info = json.loads((tmp_path / "out" / "prepare.json").read_text())
    gamma_404s = server.count("/gone/")
    assert info["dropped"]["images"] == {
        "aspect_ratio": 1,
        "box_outside_photo": 2,
        "connection_reset": 1,
        "http_error": 2 + gamma_404s,
        "incomplete_download": 1,
        "malformed_row": 1,
        "not_an_image": 1,
        "timeout": 1,
        "truncated_image": 1,
    }
    assert info["dropped"]["identities"] == {"too_few_images": 1, "too_few_usable_images": 1}
    dataset = load_prepared(result.root)
    per_identity = {i.name: [s for s in dataset.samples if s.identity == i.id] for i in dataset.identities}
    assert {name: len(samples) for name, samples in per_identity.items()} == {"Alpha": 5, "Beta": 4}
    assert all(len(dataset.split_indices(s)) > 0 for s in ("train", "test"))
    assert server.count("/fault/500.jpg") == 2 and server.count("/fault/404.jpg") == 1  # 5xx retried, 404 not
    assert server.count("/ok/flaky.jpg") == 2
    assert server.count("/fault/outside-static.jpg") == 0 and server.count("/fault/aspect.jpg") == 0

    # A second run reuses every verified photo: no request for them, same dataset.
    before = {path: server.count(path) for path in server.routes}
    prepare_imdb_face(index, tmp_path / "out", selection, download_dir=tmp_path / "dl", http=FAST_HTTP, overwrite=True)
    assert all(server.count(path) == before[path] for path in server.routes if path.startswith("/ok/"))
    assert server.count("/fault/404.jpg") == 2  # failures are tried again
    assert (tmp_path / "out" / "manifest.csv").read_text() == (result.root / "manifest.csv").read_text()


def test_interrupted_download_run_continues(tmp_path: Path, faulty_index, monkeypatch: pytest.MonkeyPatch) -> None:
    index, server = faulty_index
    original = imdb_face.http_get
    fetched: list[str] = []

    def interrupted(url: str, options: HttpOptions) -> bytes:
        if "/ok/" in url:
            if len(fetched) == 3:
                raise KeyboardInterrupt
            fetched.append(url)
        return original(url, options)

    monkeypatch.setattr(imdb_face, "http_get", interrupted)
    selection = Selection(image_size=16, min_images=4, workers=1)
    with pytest.raises(KeyboardInterrupt):
        prepare_imdb_face(index, tmp_path / "out", selection, download_dir=tmp_path / "dl", http=FAST_HTTP)
    assert not (tmp_path / "out").exists() and len(fetched) == 3
    before = {path: server.count(path) for path in server.routes}
    monkeypatch.setattr(imdb_face, "http_get", original)
    prepare_imdb_face(index, tmp_path / "out", selection, download_dir=tmp_path / "dl", http=FAST_HTTP)
    fetched_paths = {url.split(":", 2)[2].split("/", 1)[1] for url in fetched}
    assert all(server.count("/" + path) == before["/" + path] for path in fetched_paths)  # reused, not fetched again
    assert all(server.count(path) > before[path] for path in server.routes if path.startswith("/ok/alpha") and path[1:] not in fetched_paths)
    assert load_prepared(tmp_path / "out").num_identities == 2


def test_sampling_downloads_only_what_it_keeps(tmp_path: Path, data_lfw_dir: Path, data_http_server) -> None:
    server = data_http_server
    photos = _photos(data_lfw_dir, 10)
    rows = []
    for n, photo in enumerate(photos):
        server.routes[f"/p{n}.jpg"] = server.body(photo)
        rows.append(["Solo", "nm9", f"{n}.jpg", BOX, "250 250", server.url(f"/p{n}.jpg")])
    index = _write(tmp_path / "i.csv", rows, delimiter=",", newline="\n", bom=False)
    code = main(["prepare", "imdb-face", "--csv", str(index), "--out", str(tmp_path / "out"), "--min-images", "5", "--per-identity", "5",
                 "--image-size", "16", "--split", "80/10/10", "--seed", "7", "--no-progress"])
    assert code == 0
    dataset = load_prepared(tmp_path / "out")
    assert len(dataset.samples) == 5 and server.count("/p") == 5
    assert [s.split for s in dataset.samples].count("train") == 4
    assert dataset.info["seed"] == 7 and dataset.info["parameters"]["aspect_ratio"] == [0.75, 1.25]
    assert (tmp_path / "out-downloads").is_dir()


def test_real_split_lists_and_their_anomaly(data_imdb_dir: Path) -> None:
    listed, anomalies = read_split_lists(data_imdb_dir / "splits")
    raw = sum(1 for s in ("train", "val", "test") for line in (data_imdb_dir / "splits" / f"{s}_labels.csv").read_text().splitlines() if line.strip())
    assert len(listed) == raw
    assert {item.split for item in listed} == {"train", "val", "test"}
    assert len(anomalies) == 1 and "Matt_Riedy" in anomalies[0] and "103" in anomalies[0] and "104" in anomalies[0]


def test_split_lists_give_exactly_the_authors_split(tmp_path: Path, data_make_photo: Callable[..., Path]) -> None:
    lists = tmp_path / "splits"
    lists.mkdir()
    layout = {"train": [("Kim", 0), ("Kim", 0), ("Lee", 1), ("Lee", 2), ("Lee", 2)], "val": [("Kim", 0), ("Lee", 2)], "test": [("Lee", 1), ("Kim", 0)]}
    for split, entries in layout.items():
        lines = []
        for number, (name, label) in enumerate(entries, start=1):
            data_make_photo(tmp_path / "their" / "images" / split / f"{number}.jpg", (label * 80, 40, 40))
            lines.append(f"images/{split}/{number}.jpg, {name},{label}\r\n")
        (lists / f"{split}_labels.csv").write_text("".join(lines) + "\r\n", encoding="utf-8", newline="")
    (tmp_path / "their" / "images" / "test" / "1.jpg").unlink()
    annotations = tmp_path / "codes.csv"
    annotations.write_text("Label,Skin,Eye,Race,Specs,Facial_Hair,Age,Gender,Name\n0,2,1,5,0,0,30,1,Kim\n2,1,1,4,0,1,50,0,Lee\n", encoding="utf-8")
    result = prepare_imdb_face_lists(lists, tmp_path / "their", tmp_path / "out", image_size=8, annotations=annotations)
    dataset = load_prepared(result.root)
    assert [i.name for i in dataset.identities] == ["Kim", "Lee#1", "Lee#2"]
    got = sorted((s.source, s.split, dataset.identities[s.identity].name) for s in dataset.samples)
    expected = sorted(
        (f"images/{split}/{n}.jpg", split, name if name == "Kim" else f"{name}#{label}")
        for split, entries in layout.items()
        for n, (name, label) in enumerate(entries, start=1)
        if (split, n) != ("test", 1)
    )
    assert got == expected
    assert result.dropped_images == {"missing_file": 1}
    assert {i.name: i.attributes["gender"] for i in dataset.identities} == {"Kim": "female", "Lee#1": "unknown", "Lee#2": "male"}
    assert any("Lee" in anomaly for anomaly in result.anomalies)


def test_malformed_split_list_row_stops(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}_labels.csv").write_text(f"images/{split}/1.jpg, Kim,0\r\n", encoding="utf-8")
    (tmp_path / "val_labels.csv").write_text("images/val/1.jpg, Kim\r\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"val_labels.csv, line 1"):
        read_split_lists(tmp_path)


def test_annotations_by_name_and_only_annotated(tmp_path: Path) -> None:
    annotations = tmp_path / "codes.csv"
    annotations.write_text("Label,Skin,Eye,Race,Specs,Facial_Hair,Age,Gender,Name\n0,2,1,5,1,0,30,1,Ann_Able\n", encoding="utf-8")
    index = _write(tmp_path / "i.csv", ROWS, delimiter=",", newline="\n", bom=False)
    everyone = scan_index(index, download_dir=tmp_path / "dl", annotations=annotations)
    assert sorted(everyone.candidates) == ["Ann_Able", "Bob_Baker"]
    assert everyone.attributes == {"Ann_Able": {"skin_color": "white", "eye_color": "brown", "race": "caucasian", "eyeglasses": "yes",
                                                "facial_hair": "none", "age": "<35", "gender": "female"}}
    annotated = scan_index(index, download_dir=tmp_path / "dl", annotations=annotations, only_annotated=True)
    assert sorted(annotated.candidates) == ["Ann_Able"] and annotated.dropped_images == {"not_annotated": 1}


def test_a_name_shared_by_two_imdb_ids_gives_two_identities(tmp_path: Path) -> None:
    rows = [["Sam_Lee", "nm1", "1.jpg", BOX, "250 250", "http://e/1"], ["Sam_Lee", "nm2", "2.jpg", BOX, "250 250", "http://e/2"], ROWS[0]]
    source = scan_index(_write(tmp_path / "i.csv", rows, delimiter=",", newline="\n", bom=False), download_dir=tmp_path / "dl")
    assert sorted(source.candidates) == ["Ann_Able", "Sam_Lee_nm1", "Sam_Lee_nm2"]
    assert [c.identity for c in source.candidates["Sam_Lee_nm2"]] == ["Sam_Lee_nm2"]
    assert len(source.anomalies) == 1 and "Sam_Lee" in source.anomalies[0]


def test_split_lists_with_a_missing_images_folder_stop_at_once(data_imdb_dir: Path, tmp_path: Path, caplog) -> None:
    # 75,000 listed images: one error naming the folder, not a warning per image first.
    with caplog.at_level(logging.WARNING), pytest.raises(DataError, match=r"images folder .*nowhere does not exist"):
        prepare_imdb_face_lists(data_imdb_dir / "splits", tmp_path / "nowhere", tmp_path / "out")
    assert not [r for r in caplog.records if "listed but missing" in r.getMessage()]


def test_listed_images_missing_are_counted_and_a_few_named(tmp_path: Path, data_make_photo: Callable[..., Path],
                                                           caplog) -> None:
    lists = tmp_path / "splits"
    lists.mkdir()
    for split in ("train", "val", "test"):
        lines = [f"images/{split}/{n}.jpg, Kim,0\r\n" for n in range(1, 31)]
        (lists / f"{split}_labels.csv").write_text("".join(lines), encoding="utf-8", newline="")
    data_make_photo(tmp_path / "their" / "images" / "train" / "1.jpg", (80, 40, 40))  # one of 90 present
    with caplog.at_level(logging.WARNING):
        result = prepare_imdb_face_lists(lists, tmp_path / "their", tmp_path / "out", image_size=8)
    assert result.dropped_images == {"missing_file": 89}
    named = [r.getMessage() for r in caplog.records if "listed but missing" in r.getMessage()]
    assert len(named) == 10 and "further missing images are only counted" in named[-1]
