"""Table II: train and evaluate the paper's six models, then tabulate them (with our extra columns)."""

from __future__ import annotations

import csv
import io
import logging
import statistics
from pathlib import Path

from facegraph.engine import runs
from facegraph.engine.checkpoint import atomic_write_bytes
from facegraph.engine.config import RunConfig, load_config
from facegraph.engine.presets import TABLE2_ROWS, preset_path
from facegraph.engine.train import train
from facegraph.errors import FacegraphError

logger = logging.getLogger(__name__)

READOUT_FEATURES = ("gender", "age")


def model_label(config: RunConfig, with_backbone: bool = False) -> str:
    """The row name as the paper writes it (ConvNet-AIG [t=0.4], ConvNet-IIG (Gender + Age), ...); `with_backbone`
    appends the ResNet for gated models (the report, where runs of several backbones may meet)."""
    backbone = config.model.arch.replace("resnet", "ResNet-")
    if config.model.width != 1.0:
        backbone += f" (width {config.model.width:g})"
    if config.model.variant == "resnet":
        return backbone
    if config.model.variant == "aig":
        label = f"ConvNet-AIG [t={config.model.target_rate:g}]"
    else:
        features = " + ".join(f.name.replace("_", " ").capitalize() for f in config.loss.iig_features)
        label = f"ConvNet-IIG ({features})"
    return f"{label} {backbone}" if with_backbone else label


def ensure_run(config_path: Path, data: Path, run_dir: Path, overrides: list[str]) -> dict:
    """Train (or resume) a run unless it is finished already; return its eval/test.json."""
    config = load_config(config_path, overrides)
    if (run_dir / runs.DONE_FILE).exists():
        logger.info("reusing finished run %s", run_dir)
    else:
        train(config, data, run_dir, resume=(run_dir / runs.CONFIG_FILE).exists())
    test_json = run_dir / runs.EVAL_DIR / "test.json"
    if not test_json.exists():
        raise FacegraphError(f"{run_dir} finished without a test evaluation: the dataset needs a test split")
    return runs.read_json(test_json)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return statistics.fmean(known), statistics.pstdev(known) if len(known) > 1 else 0.0


def table_rows(results: dict[str, tuple[RunConfig, list[dict]]]) -> list[dict]:
    """One row per model: means (and standard deviations over seeds) of each column."""
    rows = []
    for name, (config, evaluations) in results.items():
        columns = {
            "top1": [100 * e["top1"] for e in evaluations],
            "gmacs_conv_only": [e["gmacs_conv_only"]["mean"] for e in evaluations],
            "gmacs": [e["gmacs"]["mean"] for e in evaluations],
            "top5": [100 * e["top5"] for e in evaluations],
            "speedup": [e.get("speedup", {}).get("measured") for e in evaluations],
            **{f"readout_{f}": [None if e.get("readout", {}).get(f, {}).get("accuracy") is None
                                else 100 * e["readout"][f]["accuracy"] for e in evaluations]
               for f in READOUT_FEATURES},
        }
        row = {"preset": name, "model": model_label(config), "seeds": len(evaluations)}
        for column, values in columns.items():
            row[column], row[f"{column}_std"] = _mean_std(values)
        rows.append(row)
    return rows


COLUMNS = [
    ("model", "Model"), ("top1", "Top-1 test (%)"), ("gmacs_conv_only", "GMACs (conv only, the paper's \"GFLOPs\")"),
    ("gmacs", "GMACs (all counted)"), ("top5", "Top-5 test (%)"), ("speedup", "Measured skipping speedup"),
    ("readout_gender", "Gate read-out: gender (%)"), ("readout_age", "Gate read-out: age (%)"),
]


def _cell(row: dict, key: str) -> str:
    value = row[key]
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    digits = 3 if key.startswith("gmacs") else 2
    text = f"{value:.{digits}f}"
    if row["seeds"] > 1 and row.get(f"{key}_std") is not None:
        text += f" ± {row[f'{key}_std']:.{digits}f}"
    return text + ("x" if key == "speedup" else "")


def write_table(rows: list[dict], out: Path, preset: str) -> tuple[Path, Path]:
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [f"# Table II ({preset} preset)", "", header, "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row, key) for key, _ in COLUMNS) + " |" for row in rows]
    lines += ["", "GMACs are per test image with deterministic gates (1 MAC = 1 multiply-accumulate, GFLOPs = 2 x "
              "GMACs). Speedup: dense masked vs skipping inference, measured on this machine. Read-out: eq. 5 "
              "accuracy on the test split (IIG: training masks; AIG: per-label mean gates of the training split)."]
    markdown = out / "table2.md"
    atomic_write_bytes(markdown, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    table_csv = out / "table2.csv"
    atomic_write_bytes(table_csv, lambda tmp: tmp.write_text(buffer.getvalue()))
    return markdown, table_csv


def run_table2(preset: str, data: str | Path, out: str | Path, *, seeds: int = 1,
               overrides: list[str] | None = None, models: list[str] | None = None) -> tuple[Path, list[dict]]:
    """Train/evaluate each model of Table II (reusing finished runs) and write table2.md / table2.csv in `out`."""
    if preset not in TABLE2_ROWS:
        raise FacegraphError(f"unknown preset {preset!r}; choose one of {', '.join(TABLE2_ROWS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, tuple[RunConfig, list[dict]]] = {}
    for name in models or TABLE2_ROWS[preset]:
        config_path = preset_path(preset, name)
        evaluations = []
        for seed in range(seeds):
            seed_overrides = [*(overrides or []), f"train.seed={seed}"]
            evaluations.append(ensure_run(config_path, Path(data), out / f"{name}-seed{seed}", seed_overrides))
        results[name] = (load_config(config_path, overrides), evaluations)
    rows = table_rows(results)
    markdown, _ = write_table(rows, out, preset)
    return markdown, rows
