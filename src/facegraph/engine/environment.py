"""environment.json: what ran a training (interpreter, torch, machine, git revision, command line), recorded when
it starts and on every resume."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _git_revision() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment(world_size: int, device: str) -> dict[str, Any]:
    """environment.json: what ran the training."""
    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "host": socket.gethostname(), "git_revision": _git_revision(), "argv": sys.argv,
        "world_size": world_size, "device": device, "threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
