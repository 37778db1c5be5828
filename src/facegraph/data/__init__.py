"""Face data: sources (IMDb-Face, folder/LFW, CelebA) -> prepared dataset -> batches of tensors.

See docs/data.md for the prepared-dataset format and every source.
"""

from typing import Any

from facegraph.data.attributes import EXTRA_FEATURES, KNOWN_FEATURES, PAPER_FEATURES, UNKNOWN, UNKNOWN_CODE, bucket_age
from facegraph.data.build import PrepareResult, Selection, parse_split
from facegraph.data.images import UnusableImage, load_image_for_inference
from facegraph.data.locate import find_data_root
from facegraph.data.prepared import Identity, PreparedDataset, Sample, load_prepared
from facegraph.data.sources.celeba import prepare_celeba
from facegraph.data.sources.folder import prepare_folder
from facegraph.data.sources.imdb_face import prepare_imdb_face, prepare_imdb_face_lists
from facegraph.data.sources.lfw import fetch_lfw, fetch_lfw_pairs, prepare_lfw

__all__ = [
    "EXTRA_FEATURES",
    "KNOWN_FEATURES",
    "PAPER_FEATURES",
    "UNKNOWN",
    "UNKNOWN_CODE",
    "Batch",
    "CachedLoader",
    "Identity",
    "PrepareResult",
    "PreparedDataset",
    "Sample",
    "Selection",
    "UnusableImage",
    "bucket_age",
    "fetch_lfw",
    "fetch_lfw_pairs",
    "find_data_root",
    "load_image_for_inference",
    "load_prepared",
    "make_loader",
    "parse_split",
    "prepare_celeba",
    "prepare_folder",
    "prepare_imdb_face",
    "prepare_imdb_face_lists",
    "prepare_lfw",
]


def __getattr__(name: str) -> Any:
    # The loader needs torch; importing it on first use keeps `facegraph --help` fast.
    if name in ("Batch", "CachedLoader", "make_loader"):
        from facegraph.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'facegraph.data' has no attribute {name!r}")
