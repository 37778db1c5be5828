"""Table II: one row per model (mean and standard deviation over seeds) from each run's eval/test.json, as Markdown
and CSV, and every gated model paired against the ResNet on the same test images (eval/test-images.csv; over
cross-validation folds also dataset.json and config.json). `facegraph table2`, `facegraph demo` and the report all
tabulate through here."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegraph import paper
from facegraph.analysis.statistics import (
    ImageSamplingFloor, McNemarResult, PairedDifference, balanced_accuracy, binomial_interval, image_sampling_floor,
    majority_rate, mcnemar_exact, mean_std, paired_difference,
)
from facegraph.config import RunConfig
from facegraph.engine.metrics import mean_open_rate
from facegraph.errors import DataError
from facegraph.rundir import RunDir, write_text

READOUT_FEATURES = ("gender", "age")
READOUT_SCORES = ("", "_balanced", "_majority")  # column suffixes: accuracy, balanced accuracy, majority-label rate
COLUMNS = [
    ("model", "Model"), ("top1", "Top-1 test (%)"), ("gmacs_conv_only", "GMACs (conv only, the paper's \"GFLOPs\")"),
    ("gmacs", "GMACs (all counted)"), ("top5", "Top-5 test (%)"), ("open_rate", "Mean open rate"),
    ("speedup", "Measured skipping speedup"),
    ("verify", "Verification (%, 10 folds)"), ("verify_flip", "Verification with flip (%)"),
    ("readout_gender", "Gate read-out: gender (%)"), ("readout_age", "Gate read-out: age (%)"),
]
NOTE = ("GMACs are per test image with deterministic gates (1 MAC = 1 multiply-accumulate, GFLOPs = 2 x GMACs). "
        "Speedup: dense masked vs skipping inference, measured on this machine. Read-out: eq. 5 accuracy on the test "
        "split (IIG: training masks; AIG: per-label mean gates of the training split), with its balanced accuracy (mean "
        "recall over labels) and the majority-label rate it must beat. Over several seeds: mean ± "
        "sample standard deviation; one seed: top-1 with its exact (Clopper-Pearson) 95 % binomial interval in brackets.")


@dataclass
class ModelRuns:
    """One row of the table: a model's config and the test evaluations of its runs (one per seed)."""

    name: str  # preset or run name
    config: RunConfig
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # eval/test.json of each seed
    run_dirs: list[Path] = field(default_factory=list)


def confusion_scores(confusion: list[list[int]]) -> tuple[float | None, float | None, float | None]:
    """Accuracy, balanced accuracy (mean recall over the labels present) and the majority-label rate (what always
    answering the most frequent label scores) of a read-out's confusion matrix (rows: true labels), as fractions."""
    if not confusion:  # an evaluation that stored an accuracy without its matrix
        return None, None, None
    matrix = np.asarray(confusion, dtype=np.int64).reshape(len(confusion), -1)
    if not matrix.sum():
        return None, None, None
    # One (true, predicted) code pair per image, so the scores come from the same functions the probe uses.
    true_codes = np.repeat(np.arange(matrix.shape[0]), matrix.sum(axis=1))
    predicted_codes = np.repeat(np.tile(np.arange(matrix.shape[1]), matrix.shape[0]), matrix.ravel())
    return (float(np.trace(matrix) / matrix.sum()), balanced_accuracy(true_codes, predicted_codes, matrix.shape[0]),
            majority_rate(true_codes))


def _readout_percent(evaluation: dict[str, Any], feature: str, score: int) -> float | None:
    """score 0: accuracy, 1: balanced accuracy, 2: majority-label rate, in %."""
    confusion = evaluation.get("readout", {}).get(feature, {}).get("confusion")
    value = confusion_scores(confusion)[score] if confusion else None
    return None if value is None else 100 * value


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _verification(evaluation: dict[str, Any], variant: str) -> float | None:
    """Mean 10-fold verification accuracy (%) when the run was verified (table2 --verify-pairs)."""
    result = evaluation.get("verification", {}).get("results", {}).get(variant)
    return None if result is None else 100 * result["accuracy_mean"]


def table_rows(models: list[ModelRuns]) -> list[dict[str, Any]]:
    """One row per model: the mean (and sample standard deviation over seeds) of each column."""
    rows = []
    for model in models:
        evaluations = model.evaluations
        columns = {
            "top1": [_percent(e.get("top1")) for e in evaluations],
            "gmacs_conv_only": [e.get("gmacs_conv_only", {}).get("mean") for e in evaluations],
            "gmacs": [e.get("gmacs", {}).get("mean") for e in evaluations],
            "top5": [_percent(e.get("top5")) for e in evaluations],
            "open_rate": [mean_open_rate(e) for e in evaluations],
            "speedup": [e.get("speedup", {}).get("measured") for e in evaluations],
            "verify": [_verification(e, "plain") for e in evaluations],
            "verify_flip": [_verification(e, "flip") for e in evaluations],
            **{f"readout_{f}{suffix}": [_readout_percent(e, f, score) for e in evaluations]
               for f in READOUT_FEATURES for score, suffix in enumerate(READOUT_SCORES)},
        }
        row: dict[str, Any] = {"preset": model.name, "model": paper.model_label(model.config),
                               "seeds": len(evaluations)}
        for column, values in columns.items():
            row[column], row[f"{column}_std"] = mean_std(values)
        row["top1_low"] = row["top1_high"] = None
        if len(evaluations) == 1 and evaluations[0].get("images"):
            images = int(evaluations[0]["images"])
            low, high = binomial_interval(round(evaluations[0]["top1"] * images), images)
            row["top1_low"], row["top1_high"] = 100 * low, 100 * high
        rows.append(row)
    return rows


@dataclass(frozen=True)
class PairedRow:
    """A gated model against the ResNet row on the same seeds and the same test images."""

    name: str
    model: str
    difference: PairedDifference  # top-1 points, this model minus the ResNet, one value per seed
    mcnemar: list[McNemarResult]  # per seed, on the two runs' right/wrong answers for the same test images
    gmacs_ratio: float | None  # mean GMACs per image over the ResNet's
    # Cross-validation (seeds on distinct folds): McNemar over the pooled test images, each tested once per model.
    pooled: McNemarResult | None = None
    pooled_folds: int = 0  # distinct folds pooled ...
    folds: int = 0  # ... of the cross-validation's folds: all of them test every photo once
    # Over cross-validation folds: the same differences with Nadeau and Bengio's interval, which decides the finding.
    corrected: PairedDifference | None = None
    # Over cross-validation folds: what the test images alone put into the deciding interval.
    floor: ImageSamplingFloor | None = None

    @property
    def deciding(self) -> PairedDifference:
        """The interval that decides the finding: the corrected one over cross-validation folds, else the plain one."""
        return self.corrected or self.difference


def _correct_by_sample(run_dir: Path) -> dict[int, bool]:
    records = RunDir(run_dir).image_records("test", {})
    if records is None:
        raise DataError(f"{run_dir}: no eval/test-images.csv for the paired test; run `facegraph evaluate {run_dir}`")
    return dict(zip(records.sample.tolist(), records.correct.tolist()))


def paired_rows(models: list[ModelRuns]) -> list[PairedRow]:
    """Every model against the first ResNet (no gates) among `models`, seed by seed: the paired difference of top-1
    with its t interval over seeds, and McNemar's exact test per seed on the same test images. Over distinct
    cross-validation folds also McNemar's test pooled over all their test images, the interval corrected for the
    folds' overlapping training sets (n_test / n_train from each run's dataset.json), which decides the finding, and
    what the test images alone put into it (image_sampling_floor)."""
    baseline = next((m for m in models if m.config.model.variant == "resnet"), None)
    if baseline is None:
        return []
    rows = []
    for model in models:
        if model is baseline:
            continue
        seeds = min(len(model.evaluations), len(baseline.evaluations))
        top1s = [[100 * e["top1"] for e in m.evaluations[:seeds]] for m in (model, baseline)]
        difference = paired_difference(*top1s)
        tests, pooled_mine, pooled_theirs = [], [], []
        for seed in range(min(seeds, len(model.run_dirs), len(baseline.run_dirs))):
            mine, theirs = _correct_by_sample(model.run_dirs[seed]), _correct_by_sample(baseline.run_dirs[seed])
            if set(mine) != set(theirs):
                raise DataError(f"{model.run_dirs[seed]} and {baseline.run_dirs[seed]} were tested on different "
                                f"images ({len(set(mine) & set(theirs))} shared of {len(mine)} and {len(theirs)}): "
                                f"they cannot be paired; evaluate both on the same dataset and split")
            samples = sorted(mine)
            tests.append(mcnemar_exact([mine[i] for i in samples], [theirs[i] for i in samples]))
            pooled_mine += [mine[i] for i in samples]
            pooled_theirs += [theirs[i] for i in samples]
        folds_tested = _distinct_folds(model, len(tests))
        pooled = mcnemar_exact(pooled_mine, pooled_theirs) if folds_tested else None
        test_train = (_test_train_ratio(model.run_dirs[:len(tests)], model.config.data.val_split)
                      if folds_tested == seeds else None)
        corrected = None if test_train is None else paired_difference(*top1s, test_train_ratio=test_train)
        # Only distinct folds test other images from seed to seed; seeds on one split share their test images.
        floor = (None if corrected is None else
                 image_sampling_floor(tests, corrected.confidence, test_train_ratio=test_train))
        gmacs, base_gmacs = (mean_std([e.get("gmacs", {}).get("mean") for e in m.evaluations])[0]
                             for m in (model, baseline))
        ratio = gmacs / base_gmacs if gmacs is not None and base_gmacs else None
        rows.append(PairedRow(model.name, paper.model_label(model.config), difference, tests, ratio, pooled,
                              folds_tested, model.config.data.folds, corrected, floor))
    return rows


def _test_train_ratio(run_dirs: list[Path], val_split: str = "val") -> float | None:
    """Mean test / training images of the runs' folds (dataset.json), or None where a run did not record them.

    Training images are the ones trained on: runs written before the validation part carved from train was recorded
    as its own split (`val_split`, the runs' data.val_split) counted it in "train" (and recorded it as
    "val_from_train"), so it is taken out here."""
    ratios = []
    for run in map(RunDir, run_dirs):
        summary = run.dataset() if run.dataset_path.is_file() else {}
        splits = summary.get("splits", {})
        if not splits.get("train") or not splits.get("test"):
            return None
        carved_in_train = 0 if val_split in splits else summary.get("val_from_train") or 0
        ratios.append(splits["test"] / (splits["train"] - carved_in_train))
    return sum(ratios) / len(ratios) if ratios else None


def _distinct_folds(model: ModelRuns, seeds: int) -> int:
    """How many distinct cross-validation folds the first `seeds` runs tested, or 0 when they are not distinct folds
    (a fixed split, one run, or a fold tested twice): only distinct folds' test images never repeat."""
    if seeds < 2 or not model.config.data.folds:
        return 0
    folds = [RunDir(run_dir).config().data.fold for run_dir in model.run_dirs[:seeds]]
    return len(folds) if len(set(folds)) == len(folds) else 0


def paired_markdown(rows: list[PairedRow]) -> list[str]:
    """The paired comparison as Markdown lines; a difference is called supported only where its interval excludes 0."""
    if not rows:
        return []
    lines = ["## Paired against the ResNet (same seeds, same test images)", "",
             "| Model | Top-1 minus ResNet (points) | 95 % interval (t over seeds) | 95 % interval, corrected for "
             "overlapping training sets | Finding | McNemar exact p (per seed) | GMACs vs ResNet |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        d = row.difference
        spread = f" ± {d.std:.2f}" if d.n > 1 else ""
        corrected = _interval(row.corrected) if row.corrected is not None else "n/a (not cross-validation)"
        pvalues = ", ".join(f"{t.p_value:.3g} ({t.b10}/{t.b01})" for t in row.mcnemar) or "n/a"
        ratio = f"{row.gmacs_ratio:.3f}x" if row.gmacs_ratio is not None else "n/a"
        lines.append(f"| {row.model} | {d.mean:+.2f}{spread} ({d.n} seed{'s' if d.n != 1 else ''}) | {_interval(d)} | "
                     f"{corrected} | {_finding(row)} | {pvalues} | {ratio} |")
    lines += ["", "McNemar: exact two-sided binomial test on the test images one model gets right and the other wrong "
              "(in brackets: right only with this model / right only with the ResNet)."]
    if any(row.corrected is not None for row in rows):
        lines.append("The folds of a cross-validation share most of their training images, so their differences "
                     "are not independent and the t interval over folds is too narrow; the corrected interval "
                     "(Nadeau and Bengio, 2003: the variance of the mean std^2 (1/K + n_test/n_train) instead of "
                     "std^2/K) decides the finding.")
    for row in rows:
        if row.pooled is not None:
            t = row.pooled
            low, high = t.difference_interval()
            coverage = ("every photo tested once" if row.pooled_folds == row.folds else
                        f"{row.pooled_folds} of {row.folds} folds, each photo tested at most once")
            lines.append(f"Cross-validation, {coverage}: {row.model} minus ResNet "
                         f"{100 * t.accuracy_difference:+.2f} points over {t.total} test images (95 % interval over "
                         f"images {100 * low:+.2f} to {100 * high:+.2f}; it leaves out training noise, which the "
                         f"interval over seeds holds), McNemar p = {t.p_value:.3g} ({t.b10}/{t.b01}).")
    lines += [_floor_line(row) for row in rows if row.floor is not None and row.deciding.has_interval]
    return lines


def _floor_line(row: PairedRow) -> str:
    """What the test photos alone put into the deciding interval: the spread they cause and the interval it gives."""
    floor, deciding = row.floor, row.deciding
    return (f"Test images alone: {row.model} minus ResNet would vary by ± {100 * floor.std:.2f} points from fold to "
            f"fold only because each fold tests other images (measured: ± {deciding.std:.2f} over {deciding.n} "
            f"folds); at that spread, with no training noise, the deciding interval would be ± "
            f"{100 * floor.half_width:.2f} (it is ± {(deciding.high - deciding.low) / 2:.2f}).")


def _interval(d: PairedDifference) -> str:
    if d.has_interval:
        return f"{d.low:+.2f} to {d.high:+.2f}"
    return "n/a (1 seed)" if d.n == 1 else "n/a (every seed the same)"


def _finding(row: PairedRow) -> str:
    """Supported only where the deciding interval (the corrected one over cross-validation folds) excludes 0."""
    d = row.deciding
    if d.supported:
        return "supported: better" if d.direction > 0 else "supported: worse"
    if row.difference.supported:
        return "not resolved (the corrected interval includes 0)"
    if d.has_interval:
        return "not resolved (interval includes 0)"
    return "needs >= 2 seeds" if d.n == 1 else "not resolved (no spread between seeds to size an interval)"


def _cell(row: dict[str, Any], key: str) -> str:
    if key == "top1" and row.get("top1_low") is not None:
        return f"{_number(row, key)} [{row['top1_low']:.1f}, {row['top1_high']:.1f}]"
    if key.startswith("readout_") and row[key] is not None:
        return (f"{_number(row, key)} (balanced {_number(row, key + '_balanced')}, majority "
                f"{_number(row, key + '_majority')})")
    return _number(row, key)


def _number(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    digits = 3 if key.startswith("gmacs") or key == "open_rate" else 2
    text = f"{value:.{digits}f}"
    if row["seeds"] > 1:
        # No std with several seeds: only one of them has this value (e.g. verification run on one seed).
        std = row.get(f"{key}_std")
        text += f" ± {std:.{digits}f}" if std is not None else f" (1 of {row['seeds']} seeds)"
    return text + ("x" if key == "speedup" else "")


def markdown_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the table as shown (Markdown here, HTML in the report)."""
    return [title for _, title in COLUMNS], [[_cell(row, key) for key, _ in COLUMNS] for row in rows]


def write_table(rows: list[dict[str, Any]], out: Path, title: str,
                paired: list[PairedRow] | None = None) -> tuple[Path, Path]:
    """table2.md (for people, with the paired comparison) and table2.csv (every number, for programs) in `out`."""
    header, cells = markdown_table(rows)
    lines = [f"# Table II ({title})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    lines += ["", NOTE, ""] + paired_markdown(paired or [])
    markdown = out / "table2.md"
    write_text(markdown, "\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    table_csv = out / "table2.csv"
    write_text(table_csv, buffer.getvalue())
    return markdown, table_csv
