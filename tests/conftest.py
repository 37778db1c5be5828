"""Shared fixtures. Data fixtures (prefix ``data_``): the real data folder, small prepared datasets, synthetic
photo folders and a loopback HTTP server with injectable faults. Run fixtures: a tiny ConvNet-IIG trained by the CLI
on synthetic photos (``tiny_run``) and photos to ask it about (``photos``)."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegraph.data import Selection, find_data_root, prepare_folder


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder ($FACEGRAPH_DATA); tests using it skip with a reason where it is absent."""
    root = find_data_root()
    if root is None:
        pytest.skip("real face data not available: set FACEGRAPH_DATA to the shared data folder (CI: ../shared/data)")
    return root


def _data_folder(data_root: Path, relative: str) -> Path:
    folder = data_root / relative
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


@pytest.fixture(scope="session")
def data_lfw_dir(data_root: Path) -> Path:
    return _data_folder(data_root, "lfw/lfw-deepfunneled")


@pytest.fixture(scope="session")
def data_celeba_dir(data_root: Path) -> Path:
    return _data_folder(data_root, "celeba-subset")


@pytest.fixture(scope="session")
def data_imdb_dir(data_root: Path) -> Path:
    return _data_folder(data_root, "imdb-face")


def _write_photo(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (40, 40), *, noise_seed: int | None = None) -> Path:
    """A synthetic photo of one colour (plus optional noise), in the format its suffix names."""
    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = rgb
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).integers(-30, 31, size=pixels.shape)
        pixels = np.clip(pixels.astype(int) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="session")
def data_make_photo() -> Callable[..., Path]:
    """``make(path, rgb, size=(40, 40), noise_seed=None)``: write a synthetic single-colour photo."""
    return _write_photo


@pytest.fixture(scope="session")
def data_synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four identities x 10 noisy single-colour photos in the LFW layout; no real data needed."""
    root = tmp_path_factory.mktemp("synthetic-faces")
    colours = {"Ann_Able": (200, 40, 40), "Bob_Baker": (40, 200, 40), "Cid_Cole": (40, 40, 200), "Dee_Dunn": (200, 200, 40)}
    for index, (name, rgb) in enumerate(colours.items()):
        for number in range(10):
            _write_photo(root / name / f"{name}_{number + 1:04d}.jpg", rgb, noise_seed=100 * index + number)
    return root


@pytest.fixture(scope="session")
def data_synthetic_prepared(tmp_path_factory: pytest.TempPathFactory, data_synthetic_folder: Path) -> Path:
    """The synthetic folder prepared at 16 px, split 60/20/20."""
    out = tmp_path_factory.mktemp("prepared") / "synthetic16"
    prepare_folder(data_synthetic_folder, out, Selection(image_size=16, split={"train": 0.6, "val": 0.2, "test": 0.2}, seed=3))
    return out


@pytest.fixture(scope="session")
def data_small_lfw(tmp_path_factory: pytest.TempPathFactory, data_lfw_dir: Path, data_root: Path) -> Path:
    """Five real LFW identities with >= 10 photos, prepared at 32 px with their gender."""
    out = tmp_path_factory.mktemp("prepared") / "lfw-small"
    prepare_folder(data_lfw_dir, out, Selection(image_size=32, min_images=10, max_identities=5), center_crop=0.45, lfw_attributes=data_root / "lfw")
    return out


@pytest.fixture
def data_photo_copy(tmp_path: Path) -> Callable[[Path, Path], Path]:
    """Copy a real photo into a temporary test folder (never into the repository)."""

    def copy(source: Path, destination: Path) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        return destination

    return copy


Behaviour = Callable[[BaseHTTPRequestHandler], None]


class LoopbackServer:
    """An HTTP server on 127.0.0.1 with one behaviour per path; records every request (path, headers)."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with server._lock:
                    server.requests.append((self.path, dict(self.headers)))
                behaviour = server.routes.get(self.path)
                if behaviour is None:
                    self.send_error(404)
                    return
                behaviour(self)

            def log_message(self, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # injected faults break connections on purpose

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def count(self, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for path, _ in self.requests if path.startswith(prefix))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # Behaviours -----------------------------------------------------------------------------------------

    @staticmethod
    def body(data: bytes, content_type: str = "image/jpeg") -> Behaviour:
        def respond(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        return respond

    @staticmethod
    def status(code: int) -> Behaviour:
        return lambda handler: handler.send_error(code)

    @staticmethod
    def flaky(failures: int, data: bytes) -> Behaviour:
        """503 for the first ``failures`` requests, then the body."""
        state = {"left": failures}

        def respond(handler: BaseHTTPRequestHandler) -> None:
            if state["left"] > 0:
                state["left"] -= 1
                handler.send_error(503)
            else:
                LoopbackServer.body(data)(handler)

        return respond

    @staticmethod
    def slow(seconds: float, data: bytes) -> Behaviour:
        def respond(handler: BaseHTTPRequestHandler) -> None:
            time.sleep(seconds)
            LoopbackServer.body(data)(handler)

        return respond

    @staticmethod
    def reset() -> Behaviour:
        """Abort the connection with a TCP reset before any response."""

        def respond(handler: BaseHTTPRequestHandler) -> None:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            handler.close_connection = True

        return respond

    @staticmethod
    def short_body(data: bytes) -> Behaviour:
        """Declare the full length, send half, close: the client sees an incomplete download."""

        def respond(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True

        return respond

    @staticmethod
    def ranged(data: bytes) -> Behaviour:
        """A static file that honours ``Range: bytes=N-`` (206), like a real web server."""

        def respond(handler: BaseHTTPRequestHandler) -> None:
            requested = handler.headers.get("Range")
            start = int(requested.split("=")[1].rstrip("-")) if requested else 0
            if start >= len(data):
                handler.send_error(416)
                return
            handler.send_response(206 if requested else 200)
            if requested:
                handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            handler.send_header("Content-Length", str(len(data) - start))
            handler.end_headers()
            handler.wfile.write(data[start:])

        return respond


@pytest.fixture
def data_http_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


# --- runs -----------------------------------------------------------------------------------------------------------

# A run small enough for a unit test: resnet20 at half width, fp32, one thread; with the synthetic data below.
TINY_RUN = ["model.arch=resnet20", "model.width=0.5", "train.batch_size=8", "train.eval_batch_size=32",
            "train.precision='fp32'", "train.channels_last=false", "train.threads=1", "train.min_steps=0",
            "gates.always_on_first=1",
            "gates.always_on_last=1", "gates.downsampling=true"]


@pytest.fixture(scope="session")
def data_synthetic_32px(data_synthetic_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic folder prepared at 32 px (the smallest input a model takes), split 60/20/20 (4 people)."""
    out = tmp_path_factory.mktemp("data") / "synthetic"
    prepare_folder(data_synthetic_folder, out, Selection(image_size=32, min_images=10,
                                                         split={"train": 0.6, "val": 0.2, "test": 0.2}))
    return out


@pytest.fixture(scope="session")
def tiny_lfw(tmp_path_factory: pytest.TempPathFactory, data_lfw_dir: Path) -> Path:
    """6 real LFW identities with >= 24 photos, 24 photos each, 32 px, split 50/25/25, with gender."""
    from facegraph.data import prepare_lfw

    out = tmp_path_factory.mktemp("data") / "lfw-tiny"
    prepare_lfw(out, Selection(image_size=32, min_images=24, per_identity=24, max_identities=6,
                               split={"train": 0.5, "val": 0.25, "test": 0.25}), lfw_dir=data_lfw_dir)
    return out


def metrics_rows(run: Path) -> list[dict]:
    """metrics.jsonl as written, one object per line."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def comparable_metrics(rows: list[dict]) -> list[dict]:
    """Metrics without the wall-clock fields (what two runs of the same config must share)."""
    clean = []
    for row in rows:
        row = json.loads(json.dumps(row))
        row.pop("seconds")
        for key in ("images_per_s", "data_wait_fraction"):
            row["train"].pop(key)
        clean.append(row)
    return clean


# --- a tiny trained ConvNet-IIG (test_api, test_export, test_layout, test_predict) -----------------------------------

PEOPLE = {"Ann_Able": ((200, 40, 40), "female"), "Bob_Baker": ((40, 200, 40), "male"),
          "Cid_Cole": ((40, 40, 200), "male"), "Dee_Dunn": ((200, 200, 40), "female")}
TRAIN_OPTIONS = ["--set", "train.epochs=1", "--set", "train.min_steps=0", "--set", "model.arch=resnet20", "--set", "model.image_size=32",
                 "--set", "train.batch_size=16", "--set", "train.precision=fp32", "--set", "train.channels_last=false",
                 "--set", "optim.warmup_epochs=0"]


def write_photo(path: Path, rgb: tuple[int, int, int], seed: int, size: tuple[int, int] = (48, 48)) -> Path:
    pixels = np.clip(np.array(rgb) + np.random.default_rng(seed).integers(-40, 41, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def prepare_tiny_dataset(root: Path) -> Path:
    """Four identities x 10 synthetic photos with LFW-style gender lists, prepared at 32 px; returns the data dir."""
    from facegraph.cli import main

    photos, lists = root / "faces", root / "attributes"
    male, female = [], []
    for index, (name, (rgb, gender)) in enumerate(PEOPLE.items()):
        for number in range(10):
            file = f"{name}_{number + 1:04d}.jpg"
            write_photo(photos / name / file, rgb, 100 * index + number)
            (male if gender == "male" else female).append(file)
    lists.mkdir()
    (lists / "lfw_male_names.txt").write_text("\n".join(male) + "\n")
    (lists / "lfw_female_names.txt").write_text("\n".join(female) + "\n")
    data = root / "data"
    assert main(["prepare", "folder", str(photos), "--min-images", "10", "--image-size", "32", "--center-crop", "0.9",
                 "--split", "60/20/20", "--attributes-lfw", str(lists), "--out", str(data), "--no-progress"]) == 0
    return data


def train_tiny_run(root: Path, run: Path) -> Path:
    """A one-epoch ConvNet-IIG (gender) ResNet-20 at 32 px, trained and evaluated by the CLI."""
    from facegraph.cli import main

    data = prepare_tiny_dataset(root)
    assert main(["train", "--config", "cpu/iig-gender", "--data", str(data), "--out", str(run), *TRAIN_OPTIONS]) == 0
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run, trained once per test module (a module may change it, as evaluating it does)."""
    root = tmp_path_factory.mktemp("api")
    return train_tiny_run(root, root / "runs" / "iig")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three photos of other sizes than the run's 32 px: a large JPEG, a wide PNG, a 32 px JPEG."""
    folder = tmp_path_factory.mktemp("photos")
    return [write_photo(folder / f"{i}.{'png' if i % 2 else 'jpg'}", rgb, 7 + i, size)
            # The JPEG is over twice the model's input: decoding it at reduced scale, as preparing does, matters.
            for i, (rgb, size) in enumerate([((200, 40, 40), (150, 200)), ((40, 200, 40), (100, 50)), ((40, 40, 200), (32, 32))])]
