"""The demo: LFW at CPU scale, a ResNet baseline, a ConvNet-AIG and a ConvNet-IIG (gender), evaluated and reported
in one folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from facegraph.data import Selection, load_prepared, prepare_lfw
from facegraph.data.sources.lfw import LFW_FOLDER
from facegraph.engine.config import load_config
from facegraph.engine.presets import preset_path
from facegraph.engine.table2 import ensure_run, table_rows, write_table
from facegraph.errors import DataError

logger = logging.getLogger(__name__)

DEMO_MODELS = ("resnet50", "aig-t0.5", "iig-gender")
DEMO_IMAGE_SIZE = 64
DEMO_SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}


@dataclass
class DemoResult:
    out: Path
    dataset: Path
    runs: dict[str, Path]
    table: Path
    rows: list[dict]
    report: Path | None


def prepared_lfw(out: Path, data: Path | None) -> Path:
    """LFW with >= 10 photos per person at 64 px under `out`, prepared once. `data` is a folder holding lfw/
    (like FACEGRAPH_DATA) or the LFW folder itself; without it LFW is found through FACEGRAPH_DATA or downloaded
    into the user cache."""
    target = out / "data" / f"lfw10-{DEMO_IMAGE_SIZE}px"
    try:
        load_prepared(target)
        return target
    except DataError:  # absent or incomplete: (re)prepare it
        logger.info("preparing LFW into %s", target)
    lfw_dir = data
    if data is not None and (data / "lfw" / LFW_FOLDER).is_dir():
        lfw_dir = data / "lfw" / LFW_FOLDER
    prepare_lfw(target, Selection(image_size=DEMO_IMAGE_SIZE, min_images=10, split=dict(DEMO_SPLIT)),
                lfw_dir=lfw_dir, overwrite=True, progress=True)
    return target


def run_demo(out: str | Path, data: str | Path | None = None, overrides: list[str] | None = None,
             report: bool = True) -> DemoResult:
    out = Path(out)
    dataset = prepared_lfw(out, Path(data) if data is not None else None)
    runs, evaluations = {}, {}
    for name in DEMO_MODELS:
        config_path = preset_path("cpu", name)
        runs[name] = out / "runs" / name
        evaluations[name] = (load_config(config_path, overrides), [ensure_run(config_path, dataset, runs[name],
                                                                             list(overrides or []))])
    rows = table_rows(evaluations)
    table, _ = write_table(rows, out, "cpu demo on LFW")
    report_path = None
    if report:
        from facegraph.analysis.report import build_report

        report_path = build_report(list(runs.values()), out / "report")
    return DemoResult(out, dataset, runs, table, rows, report_path)
