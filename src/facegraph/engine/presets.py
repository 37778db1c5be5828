"""The TOML presets shipped in the repository's configs/ folder (paper/ for a GPU, cpu/ for 2 CPU cores)."""

from __future__ import annotations

from pathlib import Path

from facegraph.errors import FacegraphError

CONFIGS_DIR = Path(__file__).resolve().parents[3] / "configs"

# The six models of the paper's Table II, in its row order: preset file stem per preset folder.
TABLE2_ROWS = {
    "paper": ["resnet101", "aig-t0.4", "aig-t0.5", "aig-t0.7", "iig-gender", "iig-gender-age"],
    "cpu": ["resnet50", "aig-t0.4", "aig-t0.5", "aig-t0.7", "iig-gender", "iig-gender-age"],
}


def preset_path(preset: str, name: str) -> Path:
    """configs/<preset>/<name>.toml, with a clear error when the repository's configs/ is not beside the package."""
    path = CONFIGS_DIR / preset / f"{name}.toml"
    if not path.exists():
        raise FacegraphError(f"preset {path} not found: facegraph's configs/ folder ships with the repository; "
                             "install it with `pip install -e .` from a checkout")
    return path
