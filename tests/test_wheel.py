"""A normal (non-editable) install works outside the source tree: the wheel ships the presets, and the installed
`facegraph` command lists them, counts a preset's FLOPs and trains a preset by name.

The wheel is built offline (no build isolation, the venv's setuptools) from a copy of the sources, and installed with
--no-deps into a fresh venv that finds torch and the other dependencies through a .pth file naming this venv's
site-packages (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from test_api import PEOPLE, write_photo

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src")


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def build_wheel(tmp: Path) -> Path:
    """facegraph's wheel, built from a copy of the sources (the checkout gets no build/ or egg-info), or skip."""
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    dist = tmp / "dist"
    if importlib.util.find_spec("build") is not None:
        command = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)]
    elif importlib.util.find_spec("setuptools") is not None:
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                   "--wheel-dir", str(dist), str(source)]
    else:
        pytest.skip("cannot build a wheel offline: neither `build` nor setuptools is installed in this environment")
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    wheels = sorted(dist.glob("facegraph-*.whl"))
    if result.returncode != 0 or not wheels:
        pytest.skip(f"cannot build a wheel offline ({' '.join(command[1:4])}): {(result.stderr or result.stdout).strip()[-300:]}")
    return wheels[0]


def fresh_venv(tmp: Path, wheel: Path) -> tuple[Path, dict[str, str]]:
    """A new venv with only facegraph installed, finding torch & co. through a .pth file; its bin dir and env."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    dependencies = Path(torch.__file__).resolve().parents[1]  # this venv's site-packages: torch, numpy, PIL, ...
    assert dependencies == Path(sysconfig.get_paths()["purelib"]).resolve()
    # A plain path line: that folder's own .pth files (this checkout's editable install) are not processed.
    (Path(purelib) / "facegraph_test_dependencies.pth").write_text(f"{dependencies}\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
         str(wheel)], tmp, env)
    return venv / "bin", env


def test_installed_wheel_has_presets_and_trains(tmp_path):
    wheel = build_wheel(tmp_path)
    bin_dir, env = fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"  # outside the source tree: nothing can be found relative to the checkout
    work.mkdir()

    where = run([str(bin_dir / "python"), "-c", "import facegraph, facegraph.config as c; "
                 "print(facegraph.__file__); print(c.presets_root())"], work, env).stdout.split()
    assert all(Path(p).resolve().is_relative_to((tmp_path / "venv").resolve()) for p in where), where
    assert not any(Path(p).resolve().is_relative_to(REPO) for p in where), where

    presets = run([str(bin_dir / "facegraph"), "presets"], work, env).stdout
    assert "cpu/aig-t0.5" in presets and "paper/resnet101" in presets and "cpu/base" not in presets

    flops = run([str(bin_dir / "facegraph"), "flops", "--config", "cpu/aig-t0.5", "--image-size", "64",
                 "--num-classes", "10"], work, env).stdout
    assert "GMACs" in flops and "expected at t=0.5" in flops

    for index, (name, (rgb, _)) in enumerate(PEOPLE.items()):
        for number in range(10):
            write_photo(work / "faces" / name / f"{name}_{number + 1:04d}.jpg", rgb, 100 * index + number)
    run([str(bin_dir / "facegraph"), "prepare", "folder", "faces", "--min-images", "10", "--image-size", "32",
         "--center-crop", "0.9", "--split", "60/20/20", "--out", "data", "--no-progress"], work, env)
    run([str(bin_dir / "facegraph"), "train", "--config", "cpu/resnet50", "--data", "data", "--out", "runs/resnet50",
         "--set", "train.epochs=1", "--set", "train.min_steps=0", "--set", "model.image_size=32", "--set", "train.batch_size=16",
         "--set", "train.precision=fp32", "--set", "train.channels_last=false", "--set", "optim.warmup_epochs=0"],
        work, env, timeout=240)
    assert (work / "runs" / "resnet50" / "done.json").is_file()
    assert (work / "runs" / "resnet50" / "checkpoints" / "best.pt").is_file()
