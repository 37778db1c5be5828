"""facegraph: face recognition with adaptive (ConvNet-AIG) and interpretable (ConvNet-IIG) inference graphs.

The public Python API (docs/api.md) is imported on first use, so `import facegraph.errors` and `facegraph --help`
do not import torch:

    import facegraph
    model = facegraph.load("runs/iig")
    embeddings, gates = model.embed(["photo.jpg"])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names, each defined in facegraph.api.
_API = ("AttributeEstimate", "Embeddings", "FaceModel", "GatedOutput", "PhotoPrediction", "PredictionFailure",
        "build_model", "export", "keep_freed_memory", "load", "load_config")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from facegraph import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facegraph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
