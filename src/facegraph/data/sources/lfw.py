"""LFW deep-funneled: fetch the official archive (verified, extracted atomically) and prepare it for the demo."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
from pathlib import Path

from facegraph.data.attributes import LFW_FEMALE_LIST, LFW_MALE_LIST
from facegraph.data.build import PrepareResult, Selection
from facegraph.data.locate import find_data_root
from facegraph.data.sources.download import DownloadFailed, HttpOptions, download_file
from facegraph.data.sources.folder import prepare_folder
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

LFW_DEEPFUNNELED_URL = "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz"
# The MD5 the LFW site publishes for that archive (no SHA-256 is published).
LFW_DEEPFUNNELED_MD5 = "68331da3eb755a505a502b5aacb3c201"
LFW_FOLDER = "lfw-deepfunneled"
# Deep-funneled photos are 250 x 250 with the face in roughly the middle 45 %.
LFW_CENTER_CROP = 0.45
LFW_MIN_IMAGES = 10


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def _extract(archive: Path, cache_dir: Path, target: Path) -> None:
    scratch = cache_dir / f".{LFW_FOLDER}.extracting-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            outside = [m.name for m in members if m.name.split("/")[0] != LFW_FOLDER]
            if outside:
                raise DataError(f"{archive}: entries outside {LFW_FOLDER}/ (e.g. {outside[0]!r}); not an LFW deep-funneled archive")
            tar.extractall(scratch, members=members, filter="data")
        os.replace(scratch / LFW_FOLDER, target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive}: cannot be extracted ({error}); delete it and run again") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_lfw(
    cache_dir: str | Path,
    url: str = LFW_DEEPFUNNELED_URL,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    http: HttpOptions = HttpOptions(timeout=60.0),
) -> Path:
    """Download, verify and extract the LFW deep-funneled archive into ``cache_dir``; return the image folder.

    Reused when ``cache_dir/lfw-deepfunneled`` exists (it appears only once fully extracted); an interrupted
    download resumes. Without ``sha256``/``md5``, the official URL is checked against the site's published MD5.
    On network failure: DataError saying where to put the data by hand.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / LFW_FOLDER
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / (url.rstrip("/").rsplit("/", 1)[-1] or f"{LFW_FOLDER}.tgz")
    if not archive.is_file():
        logger.info("downloading %s to %s", url, archive)
        try:
            download_file(url, archive, http)
        except DownloadFailed as error:
            raise DataError(
                f"cannot download LFW from {url} ({error}). Download it by hand and put the archive at {archive}, "
                f"or extract it so that {target}/<Name>/<Name>_0001.jpg exist, then run again"
            ) from None
    if md5 is None and sha256 is None and url == LFW_DEEPFUNNELED_URL:
        md5 = LFW_DEEPFUNNELED_MD5
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None:
            actual = _digest(archive, algorithm)
            if actual != expected.lower():
                archive.unlink()
                raise DataError(f"{archive}: {algorithm} {actual} does not match the expected {expected}; the file was deleted, run again")
    if sha256 is None and md5 is None:
        logger.warning("%s: no checksum given, the archive is not verified", archive)
    _extract(archive, cache_dir, target)
    return target


def default_lfw_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facegraph" / "lfw"


def locate_lfw(cache_dir: str | Path | None = None) -> Path:
    """The LFW deep-funneled folder: ``$FACEGRAPH_DATA/lfw/lfw-deepfunneled`` if present, else fetched into the cache."""
    data_root = find_data_root()
    if data_root is not None and (data_root / "lfw" / LFW_FOLDER).is_dir():
        return data_root / "lfw" / LFW_FOLDER
    return fetch_lfw(cache_dir or default_lfw_cache())


def prepare_lfw(
    out: str | Path,
    selection: Selection | None = None,
    *,
    lfw_dir: str | Path | None = None,
    attributes_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    center_crop: float = LFW_CENTER_CROP,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareResult:
    """Prepare LFW (people with >= 10 photos by default) with gender from the lists beside the folder, if there."""
    folder = Path(lfw_dir) if lfw_dir else locate_lfw(cache_dir)
    if attributes_dir is None and (folder.parent / LFW_MALE_LIST).is_file() and (folder.parent / LFW_FEMALE_LIST).is_file():
        attributes_dir = folder.parent
    if attributes_dir is None:
        logger.warning("no LFW gender lists found beside %s: the dataset will have no attributes", folder)
    return prepare_folder(
        folder,
        out,
        selection or Selection(min_images=LFW_MIN_IMAGES),
        center_crop=center_crop,
        lfw_attributes=attributes_dir,
        overwrite=overwrite,
        progress=progress,
    )
