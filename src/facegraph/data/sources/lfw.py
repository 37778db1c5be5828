"""LFW: its attribute files (gender lists, derived table), downloading an archive from the mirrors that still
serve one (verified, resumable, extracted atomically), and preparing it with the crop that suits its variant.

LFW comes in three variants, each a 250 x 250 frame around one face: ``plain`` (``lfw.tgz``, the detector's crop,
not aligned), ``funneled`` (``lfw-funneled.tgz``, aligned by congealing) and ``deep-funneled``
(``lfw-deepfunneled.tgz``, aligned by deep funneling; the variant in ``$FACEGRAPH_DATA``). The deep-funneled
archive's only host (vis-www.cs.umass.edu) no longer resolves, so a download gets the funneled variant from the
figshare mirror scikit-learn uses, then the plain one, and tries the old host last.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from facegraph.data.attributes import UNKNOWN, IdentityAttributes, annotations_by_name, majority_per_identity, read_coded_annotations
from facegraph.data.build import PrepareResult, Selection, build_prepared, check_output_apart
from facegraph.data.locate import cache_root, find_data_root
from facegraph.data.sources.download import DownloadFailed, HttpOptions, download_file
from facegraph.data.sources.folder import add_folder_attributes, scan_folder
from facegraph.data.textfile import read_lines
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

LFW_MIN_IMAGES = 10

# --- attribute files --------------------------------------------------------------------------------------

LFW_MALE_LIST = "lfw_male_names.txt"
LFW_FEMALE_LIST = "lfw_female_names.txt"
LFW_DERIVED_TABLE = "lfw_identity_attributes_derived.csv"


def _read_name_list(path: Path) -> set[str]:
    return {line.strip() for line in read_lines(path, "LFW gender list") if line.strip()}


def read_lfw_gender_lists(male_list: str | Path, female_list: str | Path) -> dict[str, str]:
    """Per-image gender from the LFW gender lists (one image file name a line); an image in both is unknown."""
    males = _read_name_list(Path(male_list))
    females = _read_name_list(Path(female_list))
    genders = {image: "male" for image in males - females}
    genders.update({image: "female" for image in females - males})
    genders.update({image: UNKNOWN for image in males & females})
    return genders


def read_lfw_attributes(lfw_dir: str | Path, images_of_identity: Mapping[str, Iterable[str]]) -> tuple[dict[str, IdentityAttributes], list[str]]:
    """LFW attributes per identity from the files in ``lfw_dir``, and the list of files used.

    Gender is the per-identity majority over the gender lists (``lfw_male_names.txt``,
    ``lfw_female_names.txt``); if ``lfw_identity_attributes_derived.csv`` is there, its other features are
    added (model-derived, noisy). ``images_of_identity`` maps each identity name to its image file names.
    """
    lfw_dir = Path(lfw_dir)
    male, female = lfw_dir / LFW_MALE_LIST, lfw_dir / LFW_FEMALE_LIST
    derived = lfw_dir / LFW_DERIVED_TABLE
    if not (male.is_file() and female.is_file()) and not derived.is_file():
        raise DataError(f"{lfw_dir} has neither the LFW gender lists ({LFW_MALE_LIST}, {LFW_FEMALE_LIST}) nor {LFW_DERIVED_TABLE}")
    used: list[str] = []
    attributes: dict[str, IdentityAttributes] = {name: {} for name in images_of_identity}
    if derived.is_file():
        table, _ = annotations_by_name(read_coded_annotations(derived), derived)
        for name in attributes:
            if name in table:
                attributes[name].update(table[name])
        used.append(str(derived))
    if male.is_file() and female.is_file():
        genders = read_lfw_gender_lists(male, female)
        votes = ((name, {"gender": genders.get(image, UNKNOWN)}) for name, images in images_of_identity.items() for image in images)
        for name, voted in majority_per_identity(votes).items():
            # The lists are human labels: they take precedence over the table's copy of them.
            attributes[name]["gender"] = voted["gender"]
        used += [str(male), str(female)]
    return attributes, used


# --- variants and mirrors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LfwVariant:
    """One LFW variant: the folder its archive extracts to and the central crop that holds its face.

    ``center_crop`` is the side of the kept central square as a fraction of the 250-pixel frame. Deep-funneled:
    0.45 (a face about 110 px wide, per the shared data's README). Funneled and plain: 0.5, from the face region
    scikit-learn cuts from these two variants (rows 70-195, columns 78-172: 94 x 125 px, centred 7 px below the
    frame's centre, so 0.45 would cut the chin); plain faces are not aligned, so the margin also absorbs tilt.
    Neither of these two is available offline here, so 0.5 is a documented choice, not a measurement.
    """

    name: str
    folder: str
    center_crop: float


LFW_VARIANTS: dict[str, LfwVariant] = {
    variant.name: variant
    for variant in (
        LfwVariant("deep-funneled", "lfw-deepfunneled", 0.45),
        LfwVariant("funneled", "lfw_funneled", 0.5),
        LfwVariant("plain", "lfw", 0.5),
    )
}
LFW_FOLDER = LFW_VARIANTS["deep-funneled"].folder


@dataclass(frozen=True)
class LfwDownload:
    """A file one mirror serves: its URL, the name it is stored under, its checksums (None: not published),
    and for an image archive the variant it holds (None for a plain file such as ``pairs.txt``)."""

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    variant: str | None = None


# Tried in this order. Figshare hosts the files scikit-learn's fetch_lfw_people uses (checksums from
# sklearn/datasets/_lfw.py); the MD5 of the old host's deep-funneled archive is the one that site published.
LFW_MIRRORS: tuple[LfwDownload, ...] = (
    LfwDownload("https://ndownloader.figshare.com/files/5976015", "lfw-funneled.tgz",
                sha256="b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a", variant="funneled"),
    LfwDownload("https://ndownloader.figshare.com/files/5976018", "lfw.tgz",
                sha256="055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0", variant="plain"),
    LfwDownload("http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz", "lfw-deepfunneled.tgz",
                md5="68331da3eb755a505a502b5aacb3c201", variant="deep-funneled"),
)
LFW_PAIRS_MIRRORS: tuple[LfwDownload, ...] = (
    LfwDownload("https://ndownloader.figshare.com/files/5976006", "pairs.txt",
                sha256="ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
    LfwDownload("http://vis-www.cs.umass.edu/lfw/pairs.txt", "pairs.txt",
                sha256="ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
)
LFW_HTTP = HttpOptions(timeout=60.0)


def lfw_variant_of(folder: str | Path) -> LfwVariant | None:
    """The variant a folder holds, from its name as the archives extract it; None for a name none of them uses."""
    name = Path(folder).name
    return next((variant for variant in LFW_VARIANTS.values() if variant.folder == name), None)


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def _checksum_failure(path: Path, download: LfwDownload) -> str | None:
    """None if ``path`` matches the published checksums (or none is published), else what differs."""
    for algorithm, expected in (("sha256", download.sha256), ("md5", download.md5)):
        if expected is not None:
            actual = _digest(path, algorithm)
            if actual != expected.lower():
                return f"{algorithm} {actual} does not match the expected {expected}"
    if download.sha256 is None and download.md5 is None:
        logger.warning("%s: no published checksum, the file is not verified", path)
    return None


def _extract(archive: Path, folder: str, cache_dir: Path) -> Path:
    """Extract ``archive`` (every entry under ``folder/``) to ``cache_dir/folder``, atomically."""
    target = cache_dir / folder
    scratch = cache_dir / f".{folder}.extracting-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            outside = [m.name for m in members if m.name.split("/")[0] != folder]
            if outside:
                raise DataError(f"entries outside {folder}/ (e.g. {outside[0]!r}), not an LFW archive of that variant")
            tar.extractall(scratch, members=members, filter="data")
        os.replace(scratch / folder, target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"cannot be extracted ({error})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _fetch_file(download: LfwDownload, cache_dir: Path, http: HttpOptions, progress: bool) -> Path:
    """The verified file of one mirror in ``cache_dir`` (downloaded or resumed if not there); DataError saying why not."""
    path = cache_dir / download.filename
    if not path.is_file():
        logger.info("downloading %s to %s", download.url, path)
        try:
            download_file(download.url, path, http, progress=progress)
        except DownloadFailed as error:
            raise DataError(str(error).removeprefix(f"{download.url}: ")) from None
    mismatch = _checksum_failure(path, download)
    if mismatch is not None:
        path.unlink()
        raise DataError(f"{mismatch} (deleted {path})")
    return path


def _all_failed(what: str, tried: list[str], mirrors: Sequence[LfwDownload], cache_dir: Path, hint: str) -> DataError:
    by_hand = "; ".join(f"{cache_dir / m.filename} (from {m.url})" for m in mirrors)
    return DataError(f"cannot download {what}: tried {'; '.join(tried)}. Download it by hand and put it at one of {by_hand}{hint}, then run again")


def fetch_lfw(
    cache_dir: str | Path,
    mirrors: Sequence[LfwDownload] = LFW_MIRRORS,
    *,
    http: HttpOptions = LFW_HTTP,
    progress: bool = False,
) -> Path:
    """Download, verify and extract LFW into ``cache_dir`` from the first of ``mirrors`` that works; the image folder.

    A folder already extracted there (of any variant in ``mirrors``, in their order) is reused; an archive already
    there (an earlier download, or one put there by hand) is verified and used; an interrupted download resumes
    (HTTP Range) from ``<archive>.part``. The checksum is verified before anything is extracted; a mismatch deletes
    the archive and moves on to the next mirror. When every mirror fails: one DataError listing each URL with its
    failure and where to put a hand-downloaded archive. ``lfw_variant_of(folder)`` tells the variant obtained.
    """
    cache_dir = Path(cache_dir)
    archives = [m for m in mirrors if m.variant is not None]
    if not archives:
        raise DataError("no LFW image archive among the mirrors given")
    for mirror in archives:
        existing = cache_dir / LFW_VARIANTS[mirror.variant].folder
        if existing.is_dir():
            return existing
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the LFW cache folder {cache_dir}: {error.strerror or error}") from None
    tried: list[str] = []
    for mirror in archives:
        try:
            archive = _fetch_file(mirror, cache_dir, http, progress)
            try:
                folder = _extract(archive, LFW_VARIANTS[mirror.variant].folder, cache_dir)
            except DataError as error:
                archive.unlink()
                raise DataError(f"{error} (deleted {archive})") from None
        except DataError as error:
            logger.warning("LFW from %s: %s", mirror.url, error)
            tried.append(f"{mirror.url} ({error})")
            continue
        if mirror.variant != "deep-funneled":
            logger.warning("downloaded the %s LFW variant (deep-funneled has no live mirror); its faces get a %.2f center crop",
                           mirror.variant, LFW_VARIANTS[mirror.variant].center_crop)
        return folder
    hint = f", or extract it so that {cache_dir}/<folder>/<Name>/<Name>_0001.jpg exist"
    raise _all_failed("LFW", tried, archives, cache_dir, hint)


def fetch_lfw_pairs(cache_dir: str | Path, mirrors: Sequence[LfwDownload] = LFW_PAIRS_MIRRORS, *, http: HttpOptions = LFW_HTTP) -> Path:
    """The official verification pairs (``pairs.txt``) in ``cache_dir``, downloaded and verified if not there."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tried: list[str] = []
    for mirror in mirrors:
        try:
            return _fetch_file(mirror, cache_dir, http, progress=False)
        except DataError as error:
            tried.append(f"{mirror.url} ({error})")
    raise _all_failed("the LFW pairs", tried, mirrors, cache_dir, "")


def default_lfw_cache() -> Path:
    return cache_root() / "lfw"


def locate_lfw(cache_dir: str | Path | None = None, mirrors: Sequence[LfwDownload] = LFW_MIRRORS, *, progress: bool = False) -> Path:
    """The LFW folder: ``$FACEGRAPH_DATA/lfw/lfw-deepfunneled`` if present, else fetched into the cache."""
    data_root = find_data_root()
    if data_root is not None and (data_root / "lfw" / LFW_FOLDER).is_dir():
        return data_root / "lfw" / LFW_FOLDER
    return fetch_lfw(cache_dir or default_lfw_cache(), mirrors, progress=progress)


def prepare_lfw(
    out: str | Path,
    selection: Selection | None = None,
    *,
    lfw_dir: str | Path | None = None,
    attributes_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    center_crop: float | None = None,
    mirrors: Sequence[LfwDownload] = LFW_MIRRORS,
    overwrite: bool = False,
    progress: bool = False,
) -> PrepareResult:
    """Prepare LFW (people with >= 10 photos by default) with gender from the lists beside the folder, if there.

    ``center_crop`` None: the crop of the folder's variant (``LFW_VARIANTS``; deep-funneled's for a folder name
    no archive uses). The variant and the crop are recorded in ``prepare.json`` (``parameters.lfw_variant``,
    ``parameters.center_crop``).
    """
    check_output_apart(out, [lfw_dir, attributes_dir, cache_dir], overwrite=overwrite)
    folder = Path(lfw_dir) if lfw_dir else locate_lfw(cache_dir, mirrors, progress=progress)
    check_output_apart(out, [folder], overwrite=overwrite)
    variant = lfw_variant_of(folder)
    if center_crop is None:
        center_crop = (variant or LFW_VARIANTS["deep-funneled"]).center_crop
    if attributes_dir is None and (folder.parent / LFW_MALE_LIST).is_file() and (folder.parent / LFW_FEMALE_LIST).is_file():
        attributes_dir = folder.parent
    if attributes_dir is None:
        logger.warning("no LFW gender lists found beside %s: the dataset will have no attributes", folder)
    source = scan_folder(folder, center_crop=center_crop)
    if attributes_dir is not None:
        add_folder_attributes(source, lfw_attributes=attributes_dir)
    source.parameters["lfw_variant"] = variant.name if variant else None
    return build_prepared(out, source, selection or Selection(min_images=LFW_MIN_IMAGES), overwrite=overwrite, progress=progress)
