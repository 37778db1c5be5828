"""`fetch_lfw` against a loopback server: mirrors in order, checksum before extraction, resume, one error listing
every URL; small .tgz archives built in the test (synthetic photos, no real data needed); and `find_data_root`."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import socket
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from facegraph.data import Selection, fetch_lfw, find_data_root, load_prepared, prepare_lfw
from facegraph.data.sources.download import HttpOptions
from facegraph.data.sources.lfw import LFW_MIRRORS, LFW_VARIANTS, LfwDownload, fetch_lfw_pairs, lfw_variant_of
from facegraph.errors import DataError

FAST_HTTP = HttpOptions(timeout=2.0, retries=1, backoff=0.01)
NO_RETRY = HttpOptions(timeout=2.0, retries=0, backoff=0.01)


def _tgz(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def lfw_photos(tmp_path: Path, data_make_photo: Callable[..., Path]) -> dict[str, bytes]:
    """Three people x 10 small noisy photos, as ``<Name>/<Name>_000i.jpg`` -> JPEG bytes."""
    photos: dict[str, bytes] = {}
    for person, name in enumerate(("Ann_Able", "Bob_Baker", "Cid_Cole")):
        for number in range(1, 11):
            path = data_make_photo(tmp_path / "photos" / name / f"{name}_{number:04d}.jpg", (60 * person, 120, 90), (50, 50), noise_seed=100 * person + number)
            photos[f"{name}/{path.name}"] = path.read_bytes()
    return photos


def _archive(photos: dict[str, bytes], folder: str) -> bytes:
    return _tgz({f"{folder}/{relative}": data for relative, data in photos.items()})


def _mirror(server, path: str, archive: bytes, variant: str, filename: str, *, sha256: str | None = None) -> LfwDownload:
    return LfwDownload(server.url(path), filename, sha256=sha256 or hashlib.sha256(archive).hexdigest(), variant=variant)


def _dead_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/lfw-deepfunneled.tgz"


def test_default_mirrors_are_figshare_first_old_host_last() -> None:
    assert [m.url for m in LFW_MIRRORS] == [
        "https://ndownloader.figshare.com/files/5976015",
        "https://ndownloader.figshare.com/files/5976018",
        "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
    ]
    assert all(m.sha256 or m.md5 for m in LFW_MIRRORS)
    assert LFW_MIRRORS[1].sha256 == "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"


def test_fetch_verifies_extracts_and_reuses(tmp_path: Path, lfw_photos, data_http_server) -> None:
    archive = _archive(lfw_photos, "lfw_funneled")
    data_http_server.routes["/files/funneled"] = data_http_server.ranged(archive)
    mirrors = [_mirror(data_http_server, "/files/funneled", archive, "funneled", "lfw-funneled.tgz")]
    folder = fetch_lfw(tmp_path / "cache", mirrors, http=FAST_HTTP)
    assert folder == tmp_path / "cache" / "lfw_funneled"
    assert lfw_variant_of(folder) == LFW_VARIANTS["funneled"]
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.jpg")} == lfw_photos
    assert fetch_lfw(tmp_path / "cache", mirrors, http=FAST_HTTP) == folder
    assert data_http_server.count("/files/") == 1  # the second call used what was there


def test_wrong_checksum_is_refused_and_nothing_is_extracted(tmp_path: Path, lfw_photos, data_http_server) -> None:
    archive = _archive(lfw_photos, "lfw")
    data_http_server.routes["/lfw.tgz"] = data_http_server.ranged(archive)
    mirrors = [_mirror(data_http_server, "/lfw.tgz", archive, "plain", "lfw.tgz", sha256="0" * 64)]
    with pytest.raises(DataError, match=r"sha256 [0-9a-f]{64} does not match the expected 0{64}") as raised:
        fetch_lfw(tmp_path / "cache", mirrors, http=FAST_HTTP)
    assert "\n" not in str(raised.value)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []  # archive deleted, no folder


def test_dead_first_mirror_then_live_second(tmp_path: Path, lfw_photos, data_http_server) -> None:
    archive = _archive(lfw_photos, "lfw")
    data_http_server.routes["/files/plain"] = data_http_server.ranged(archive)
    data_http_server.routes["/files/gone"] = data_http_server.status(404)
    mirrors = [
        LfwDownload(_dead_url(), "lfw-deepfunneled.tgz", md5="0" * 32, variant="deep-funneled"),
        LfwDownload(data_http_server.url("/files/gone"), "lfw-funneled.tgz", sha256="0" * 64, variant="funneled"),
        _mirror(data_http_server, "/files/plain", archive, "plain", "lfw.tgz"),
    ]
    folder = fetch_lfw(tmp_path / "cache", mirrors, http=FAST_HTTP)
    assert folder == tmp_path / "cache" / "lfw" and len(list(folder.rglob("*.jpg"))) == len(lfw_photos)
    assert data_http_server.count("/files/gone") == 1  # a 404 is not retried


def test_resume_after_a_truncated_download(tmp_path: Path, lfw_photos, data_http_server) -> None:
    archive = _archive(lfw_photos, "lfw_funneled")
    cache = tmp_path / "cache"
    data_http_server.routes["/funneled"] = data_http_server.short_body(archive)
    mirrors = [_mirror(data_http_server, "/funneled", archive, "funneled", "lfw-funneled.tgz")]
    with pytest.raises(DataError, match="bytes arrived|before the whole body"):
        fetch_lfw(cache, mirrors, http=NO_RETRY)
    kept = (cache / "lfw-funneled.tgz.part").stat().st_size
    assert 0 < kept < len(archive) and not (cache / "lfw_funneled").exists()
    data_http_server.routes["/funneled"] = data_http_server.ranged(archive)
    folder = fetch_lfw(cache, mirrors, http=NO_RETRY)
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.jpg")} == lfw_photos
    _, headers = data_http_server.requests[-1]
    assert headers.get("Range") == f"bytes={kept}-"
    assert not (cache / "lfw-funneled.tgz.part").exists()


def test_all_mirrors_failing_gives_one_message_with_every_url(tmp_path: Path, lfw_photos, data_http_server) -> None:
    archive = _archive(lfw_photos, "lfw")
    data_http_server.routes["/a"] = data_http_server.status(503)
    data_http_server.routes["/b"] = data_http_server.ranged(archive)
    dead = _dead_url()
    mirrors = [
        LfwDownload(data_http_server.url("/a"), "lfw-funneled.tgz", sha256="0" * 64, variant="funneled"),
        LfwDownload(data_http_server.url("/b"), "lfw.tgz", sha256="f" * 64, variant="plain"),
        LfwDownload(dead, "lfw-deepfunneled.tgz", md5="0" * 32, variant="deep-funneled"),
    ]
    with pytest.raises(DataError) as raised:
        fetch_lfw(tmp_path / "cache", mirrors, http=FAST_HTTP)
    message = str(raised.value)
    assert "\n" not in message
    assert f"{data_http_server.url('/a')} (HTTP 503" in message
    assert f"{data_http_server.url('/b')} (sha256 " in message
    assert f"{dead} (" in message
    for name in ("lfw-funneled.tgz", "lfw.tgz", "lfw-deepfunneled.tgz"):
        assert str(tmp_path / "cache" / name) in message
    assert "by hand" in message


def test_hand_placed_archive_is_verified_and_used(tmp_path: Path, lfw_photos) -> None:
    archive = _archive(lfw_photos, "lfw_funneled")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "lfw-funneled.tgz").write_bytes(archive)
    mirrors = [LfwDownload(_dead_url(), "lfw-funneled.tgz", sha256=hashlib.sha256(archive).hexdigest(), variant="funneled")]
    assert fetch_lfw(tmp_path / "cache", mirrors, http=FAST_HTTP) == tmp_path / "cache" / "lfw_funneled"


def test_hand_placed_archive_with_wrong_contents_is_deleted_and_next_mirror_used(tmp_path: Path, lfw_photos, data_http_server) -> None:
    # a cached archive is checksummed too: a tampered one (valid .tgz, one photo changed) is deleted, never extracted
    good = _archive(lfw_photos, "lfw_funneled")
    tampered = _archive({**lfw_photos, "Ann_Able/Ann_Able_0001.jpg": b"not the published photo"}, "lfw_funneled")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "lfw-funneled.tgz").write_bytes(tampered)
    plain = _archive(lfw_photos, "lfw")
    data_http_server.routes["/files/plain"] = data_http_server.ranged(plain)
    mirrors = [
        LfwDownload(_dead_url(), "lfw-funneled.tgz", sha256=hashlib.sha256(good).hexdigest(), variant="funneled"),
        _mirror(data_http_server, "/files/plain", plain, "plain", "lfw.tgz"),
    ]
    folder = fetch_lfw(cache, mirrors, http=FAST_HTTP)
    assert folder == cache / "lfw" and not (cache / "lfw_funneled").exists()
    assert not (cache / "lfw-funneled.tgz").exists()  # the wrong archive was deleted
    assert data_http_server.count("/files/plain") == 1  # the next mirror was downloaded
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.jpg")} == lfw_photos


def test_archive_outside_its_folder_is_refused(tmp_path: Path, data_http_server) -> None:
    evil = _tgz({"../evil.txt": b"evil"})
    data_http_server.routes["/bad.tgz"] = data_http_server.ranged(evil)
    mirrors = [_mirror(data_http_server, "/bad.tgz", evil, "plain", "lfw.tgz")]
    with pytest.raises(DataError, match="entries outside lfw/"):
        fetch_lfw(tmp_path / "cache", mirrors, http=FAST_HTTP)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "lfw").exists()


def test_downloaded_variant_gets_its_crop_recorded_in_prepare_json(tmp_path: Path, lfw_photos, data_http_server, monkeypatch) -> None:
    monkeypatch.delenv("FACEGRAPH_DATA", raising=False)
    archive = _archive(lfw_photos, "lfw_funneled")
    data_http_server.routes["/f"] = data_http_server.ranged(archive)
    mirrors = [_mirror(data_http_server, "/f", archive, "funneled", "lfw-funneled.tgz")]
    result = prepare_lfw(tmp_path / "out", Selection(image_size=16, min_images=10), cache_dir=tmp_path / "cache", mirrors=mirrors)
    info = json.loads((result.root / "prepare.json").read_text())
    assert info["parameters"]["lfw_variant"] == "funneled"
    assert info["parameters"]["center_crop"] == LFW_VARIANTS["funneled"].center_crop == 0.5
    assert load_prepared(result.root).num_identities == 3


def test_pairs_are_fetched_and_verified(tmp_path: Path, data_http_server) -> None:
    pairs = b"10\t300\nAnn_Able\t1\t2\n"
    data_http_server.routes["/pairs"] = data_http_server.ranged(pairs)
    good = LfwDownload(data_http_server.url("/pairs"), "pairs.txt", sha256=hashlib.sha256(pairs).hexdigest())
    bad = LfwDownload(data_http_server.url("/pairs"), "pairs.txt", sha256="0" * 64)
    assert fetch_lfw_pairs(tmp_path / "a", [LfwDownload(_dead_url(), "pairs.txt"), good], http=FAST_HTTP).read_bytes() == pairs
    with pytest.raises(DataError, match="cannot download the LFW pairs: tried .*does not match"):
        fetch_lfw_pairs(tmp_path / "b", [bad], http=FAST_HTTP)


def test_find_data_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FACEGRAPH_DATA", str(tmp_path))
    assert find_data_root() == tmp_path
    monkeypatch.setenv("FACEGRAPH_DATA", str(tmp_path / "absent"))
    with caplog.at_level(logging.WARNING, logger="facegraph.data.locate"):
        assert find_data_root() is None
    assert f"FACEGRAPH_DATA={tmp_path / 'absent'} is not a folder; ignoring it" in caplog.text
    monkeypatch.delenv("FACEGRAPH_DATA")
    assert find_data_root() is None
