"""Atomic checkpoints with everything a resumed run needs (model, optimizer, scheduler, RNG states, epoch)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegraph.errors import FacegraphError


def atomic_write_bytes(path: Path, writer) -> None:
    """Write through a temporary file in the same folder and rename it over `path`: a reader (or a crash) never sees
    half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, epoch: int,
                    best_val_top1: float | None) -> None:
    """`epoch` = number of finished epochs."""
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "rng": rng_states(), "epoch": epoch, "best_val_top1": best_val_top1,
    }
    atomic_write_bytes(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FacegraphError(f"checkpoint {path} does not exist") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise FacegraphError(f"checkpoint {path} cannot be read ({error})") from None
