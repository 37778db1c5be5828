"""The benchmarks' `--allocator` option: time with freed memory kept for reuse, as the `facegraph` command runs
(facegraph.engine.allocator), or with the C library's own settings (large buffers mapped and returned to the kernel on
every call)."""

from __future__ import annotations

import argparse

from facegraph.engine.allocator import keep_freed_memory

KEEP_FREED, DEFAULT = "keep-freed", "default"


def add_allocator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allocator", choices=(KEEP_FREED, DEFAULT), default=KEEP_FREED,
                        help="keep-freed: reuse freed tensor memory, as the facegraph command does; default: the C "
                             "library's settings (large buffers mapped and returned to the kernel on every call)")


def apply_allocator_option(args: argparse.Namespace) -> str:
    """Set the allocator `args.allocator` asks for; returns the one in effect (keep-freed only where glibc took it)."""
    return KEEP_FREED if args.allocator == KEEP_FREED and keep_freed_memory() else DEFAULT
