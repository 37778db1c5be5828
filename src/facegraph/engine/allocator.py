"""Host memory for CPU tensors: keep freed buffers for reuse instead of handing them back to the kernel.

PyTorch allocates CPU tensors with the C library's malloc, which has no cache of its own for large blocks. With
glibc's defaults a block above the (adaptive) mmap threshold is a fresh mmap, and freed memory at the top of the heap
is returned to the kernel: a network whose activations are megabytes then page-faults and zero-fills every output it
writes, on every call. That cost does not scale with MACs, so it also eats the saving of skipped blocks, whose
smaller gathered batches are allocated anew at each gate (benchmarks/skip.py measures both settings with
--allocator). Two settings remove it: malloc maps no block with mmap, whatever its size, so that every block comes
from the heap, and the heap is never trimmed. (Raising the mmap threshold to glibc's 32 MiB ceiling instead, as this
did first, left the paper's model at batch 64 paging in every stem and stage-1 output of 64 MiB: a 1x1 convolution
there took 32-37 ms against 16-17 ms from the heap.) The price is that the process keeps its peak heap, large blocks
included, for its lifetime, which a command that runs one model does anyway. Limits: this holds for the main
thread's heap; a block that another thread's heap (at most 64 MiB) cannot hold is still mapped and unmapped as
before, as is any block where the heap cannot grow. Forked processes inherit the settings.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4  # how many blocks malloc may map with mmap at once
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest value mallopt's int takes: the heap is never trimmed in practice


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed CPU tensor memory (see the module docstring); True if glibc took both settings.

    Process-wide and idempotent; the `facegraph` command calls it before any command runs. Outside Linux/glibc it
    does nothing and returns False; with another allocator preloaded (jemalloc, tcmalloc) the settings are moot, as
    that allocator keeps its own cache. Numerical results are unchanged: only where buffers come from differs.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        logger.debug("no glibc mallopt: CPU tensor memory keeps the C library's defaults")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    took_mmap = mallopt(M_MMAP_MAX, 0) == 1
    took_trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not (took_mmap and took_trim):
        logger.debug("mallopt took no mmap: %s, the trim threshold: %s", took_mmap, took_trim)
    return took_mmap and took_trim
