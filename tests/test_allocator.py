"""The CPU allocator setting: freed tensor memory stays with the process for reuse (engine/allocator.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

MIB = 1024 * 1024

# Writes a tensor of argv[2] MiB, frees it, and prints how much resident memory the process held with it and after.
RESIDENT_AFTER_FREE = """
import os, sys, torch
from facegraph.engine.allocator import keep_freed_memory
if sys.argv[1] == "keep-freed" and not keep_freed_memory():
    raise SystemExit("keep_freed_memory() did not take effect")
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page
before = resident()
tensor = torch.ones(int(sys.argv[2]) * 256 * 1024)
held = resident() - before
del tensor
print(held, resident() - before)
"""


def resident_bytes(setting: str, mib: int) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", RESIDENT_AFTER_FREE, setting, str(mib)], capture_output=True,
                            text=True, check=True)
    held, after = result.stdout.split()
    return int(held), int(after)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt: Linux with glibc only")
@pytest.mark.parametrize("mib", [24, 48])  # below and above glibc's largest mmap threshold (32 MiB)
def test_freed_tensor_memory_stays_for_reuse_only_when_asked(mib):
    held, after = resident_bytes("default", mib)
    assert held >= (mib - 4) * MIB and after < 4 * MIB  # glibc's default: the block goes back to the kernel on free
    held, after = resident_bytes("keep-freed", mib)
    assert held >= (mib - 4) * MIB and after >= (mib - 4) * MIB  # kept: a next tensor of that size needs no new pages


def test_the_facegraph_command_keeps_freed_memory(monkeypatch):
    from facegraph import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["presets"]) == 0
    assert calls == [True]
