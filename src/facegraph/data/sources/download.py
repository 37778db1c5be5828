"""HTTP downloads with per-request timeouts, retries with exponential backoff, a verified on-disk cache and
resumable archive downloads (HTTP Range). Standard library only.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from facegraph import __version__
from facegraph.data.images import UnusableImage

logger = logging.getLogger(__name__)

USER_AGENT = f"facegraph/{__version__} (+https://github.com/facegraph)"
# Worth another try: the server or the network may do better a moment later.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
RETRYABLE_REASONS = frozenset({"timeout", "connection_reset", "connection_error", "incomplete_download", "http_retryable"})
CHUNK_BYTES = 1 << 20

T = TypeVar("T")


class DownloadFailed(UnusableImage):
    """A download that failed for good (after retries); ``reason`` says how (``timeout``, ``http_error``, ...)."""


@dataclass(frozen=True)
class HttpOptions:
    """Per-request timeout (s), retries after the first attempt, first backoff delay (s, doubled each retry)."""

    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    max_bytes: int = 32 << 20


def _classify(error: BaseException, url: str) -> DownloadFailed:
    if isinstance(error, DownloadFailed):
        return error
    if isinstance(error, urllib.error.HTTPError):
        reason = "http_retryable" if error.code in RETRYABLE_STATUS else "http_error"
        return DownloadFailed(reason, f"{url}: HTTP {error.code} {error.reason}")
    cause = error.reason if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException) else error
    if isinstance(cause, TimeoutError):
        return DownloadFailed("timeout", f"{url}: timed out")
    if isinstance(cause, ConnectionResetError):
        return DownloadFailed("connection_reset", f"{url}: connection reset by the server")
    if isinstance(cause, http.client.IncompleteRead):
        return DownloadFailed("incomplete_download", f"{url}: connection closed before the whole body arrived")
    return DownloadFailed("connection_error", f"{url}: {cause}")


def with_retries(url: str, options: HttpOptions, attempt: Callable[[], T]) -> T:
    """Run ``attempt`` until it succeeds or fails for good; DownloadFailed with the last reason."""
    for number in range(options.retries + 1):
        try:
            return attempt()
        except (urllib.error.URLError, http.client.HTTPException, OSError, DownloadFailed) as error:
            failure = _classify(error, url)
        if failure.reason not in RETRYABLE_REASONS or number == options.retries:
            break
        delay = options.backoff * 2**number
        logger.debug("%s (%s); retry %d/%d in %.2f s", url, failure.reason, number + 1, options.retries, delay)
        time.sleep(delay)
    if failure.reason == "http_retryable":
        failure.reason = "http_error"
    raise failure


def _check_length(response: http.client.HTTPResponse, received: int, url: str, offset: int = 0) -> None:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and received - offset < int(declared):
        raise DownloadFailed("incomplete_download", f"{url}: {received - offset} of {declared} bytes arrived")


def http_get(url: str, options: HttpOptions = HttpOptions()) -> bytes:
    """The body of ``url``; DownloadFailed (with a reason) after retries."""

    def attempt() -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=options.timeout) as response:
            data = response.read(options.max_bytes + 1)
            if len(data) > options.max_bytes:
                raise DownloadFailed("too_large", f"{url}: larger than {options.max_bytes} bytes")
            _check_length(response, len(data), url)
        return data

    return with_retries(url, options, attempt)


def download_file(url: str, destination: Path, options: HttpOptions = HttpOptions(), *, progress: bool = False) -> Path:
    """Download ``url`` to ``destination``, resuming ``destination.part`` from an earlier attempt (HTTP Range).

    On failure the part file is kept, so the next call resumes where this one stopped. ``progress``: a tqdm bar
    on stderr with the bytes received and the rate.
    """
    partial = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(desc=destination.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress) as bar:

        def attempt() -> None:
            offset = partial.stat().st_size if partial.exists() else 0
            headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
            request = urllib.request.Request(url, headers=headers)
            try:
                response = urllib.request.urlopen(request, timeout=options.timeout)
            except urllib.error.HTTPError as error:
                if error.code == 416 and offset:  # nothing left to fetch: the part file is whole
                    return
                raise
            with response:
                resumed = response.status == 206
                received = offset if resumed else 0
                declared = response.headers.get("Content-Length")
                bar.reset(total=received + int(declared) if declared is not None and declared.isdigit() else None)
                bar.update(received)
                with partial.open("ab" if resumed else "wb") as handle:
                    while chunk := response.read(CHUNK_BYTES):
                        handle.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                _check_length(response, received, url, offset if resumed else 0)

        with_retries(url, options, attempt)
    os.replace(partial, destination)
    return destination


class DownloadCache:
    """Downloaded files by URL, stored only once verified, written atomically (a crash leaves no half file)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.directory / digest[:2] / digest

    def get(self, url: str) -> bytes | None:
        try:
            return self.path_for(url).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, url: str, data: bytes) -> None:
        path = self.path_for(url)
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_name(f"{path.name}.part-{os.getpid()}-{threading.get_ident()}")
        temporary.write_bytes(data)
        os.replace(temporary, path)
