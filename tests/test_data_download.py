"""`fetch_lfw` against a loopback server serving a small LFW-layout archive built from real photos; and
`find_data_root`."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
from pathlib import Path

import pytest

from facegraph.data import fetch_lfw, find_data_root
from facegraph.data.sources.download import HttpOptions
from facegraph.errors import DataError

FAST_HTTP = HttpOptions(timeout=2.0, retries=1, backoff=0.01)


@pytest.fixture
def lfw_archive(data_lfw_dir: Path) -> tuple[bytes, dict[str, bytes]]:
    """A .tgz in the official layout (lfw-deepfunneled/<Name>/<file>) with a few real photos."""
    files: dict[str, bytes] = {}
    for person in sorted(data_lfw_dir.iterdir())[:3]:
        for photo in sorted(person.iterdir())[:2]:
            files[f"{person.name}/{photo.name}"] = photo.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for relative, data in files.items():
            info = tarfile.TarInfo(f"lfw-deepfunneled/{relative}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), files


def test_fetch_verifies_extracts_and_reuses(tmp_path: Path, lfw_archive, data_http_server) -> None:
    archive, files = lfw_archive
    data_http_server.routes["/lfw/lfw-deepfunneled.tgz"] = data_http_server.ranged(archive)
    url = data_http_server.url("/lfw/lfw-deepfunneled.tgz")
    folder = fetch_lfw(tmp_path / "cache", url, hashlib.sha256(archive).hexdigest(), http=FAST_HTTP)
    assert folder == tmp_path / "cache" / "lfw-deepfunneled"
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.jpg")} == files
    assert fetch_lfw(tmp_path / "cache", url, hashlib.sha256(archive).hexdigest(), http=FAST_HTTP) == folder
    assert data_http_server.count("/lfw/") == 1  # the second call used what was there


def test_checksum_mismatch_deletes_the_archive_and_extracts_nothing(tmp_path: Path, lfw_archive, data_http_server) -> None:
    archive, _ = lfw_archive
    data_http_server.routes["/lfw.tgz"] = data_http_server.ranged(archive)
    with pytest.raises(DataError, match="does not match"):
        fetch_lfw(tmp_path / "cache", data_http_server.url("/lfw.tgz"), "0" * 64, http=FAST_HTTP)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []
    with pytest.raises(DataError, match="md5"):
        fetch_lfw(tmp_path / "cache", data_http_server.url("/lfw.tgz"), md5="0" * 32, http=FAST_HTTP)


def test_interrupted_download_resumes_with_a_range_request(tmp_path: Path, lfw_archive, data_http_server) -> None:
    archive, files = lfw_archive
    data_http_server.routes["/lfw.tgz"] = data_http_server.ranged(archive)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "lfw.tgz.part").write_bytes(archive[: len(archive) // 3])
    folder = fetch_lfw(cache, data_http_server.url("/lfw.tgz"), hashlib.sha256(archive).hexdigest(), http=FAST_HTTP)
    assert len(list(folder.rglob("*.jpg"))) == len(files)
    (_, headers), = data_http_server.requests
    assert headers.get("Range") == f"bytes={len(archive) // 3}-"


def test_archive_outside_the_lfw_folder_is_refused(tmp_path: Path, data_http_server) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    data_http_server.routes["/bad.tgz"] = data_http_server.ranged(buffer.getvalue())
    with pytest.raises(DataError, match="not an LFW"):
        fetch_lfw(tmp_path / "cache", data_http_server.url("/bad.tgz"), http=FAST_HTTP)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "lfw-deepfunneled").exists()


def test_network_failure_says_where_to_put_the_data(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DataError) as raised:
        fetch_lfw(tmp_path / "cache", f"http://127.0.0.1:{port}/lfw-deepfunneled.tgz", http=FAST_HTTP)
    message = str(raised.value)
    assert "by hand" in message and str(tmp_path / "cache" / "lfw-deepfunneled.tgz") in message


def test_find_data_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEGRAPH_DATA", str(tmp_path))
    assert find_data_root() == tmp_path
    monkeypatch.setenv("FACEGRAPH_DATA", str(tmp_path / "absent"))
    assert find_data_root() is None
    monkeypatch.delenv("FACEGRAPH_DATA")
    assert find_data_root() is None
