"""`facegraph report`: the paper's Figs. 1-5 and Table II for one or more runs, as PNG files and one HTML page.

Each run directory is read (records.py), every figure is computed by its own module and saved as a PNG beside
index.html, and the page (page.py) links them relatively, so the folder opens from disk anywhere.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from matplotlib.figure import Figure
from PIL import Image

from facegraph.analysis.curves import accuracy_series, evaluated_epoch, plot_accuracy_curves, plot_runs_comparison
from facegraph.analysis.easy_hard import (
    ActiveGateComparison, compare_active_gates, easy_hard_examples, plot_active_gate_distribution, plot_easy_hard_grid,
)
from facegraph.analysis.heatmaps import BlockFinding, FeatureHeatmap, block_findings, feature_heatmap, plot_feature_heatmap
from facegraph.analysis.information import CHANCE_QUANTILE, CHANCE_ROUNDS, ChanceLevel
from facegraph.analysis.page import PageFigure, PageTable, Paragraph, Section, render_page
from facegraph.analysis.records import RunRecords, read_run_records
from facegraph.analysis.probe import linear_probe
from facegraph.analysis.table import ModelRuns, confusion_scores, markdown_table, table_rows
from facegraph.analysis.verification import verification_section
from facegraph.config import config_from_dict
from facegraph.errors import FacegraphError
from facegraph.paper import iig_masks
from facegraph.rundir import BEST, RunDir, read_json

logger = logging.getLogger(__name__)

INDEX_FILE = "index.html"
DPI = 100
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class FeatureResult:
    run: str  # the run's key: its directory name, made unique among the runs (figure files start with it)
    heatmap: FeatureHeatmap
    findings: list[BlockFinding]


@dataclass
class Report:
    """What write_report produced: the page, every figure file, and the measured numbers behind the figures."""

    index: Path
    figures: list[Path] = field(default_factory=list)
    features: list[FeatureResult] = field(default_factory=list)
    active_gates: dict[str, ActiveGateComparison] = field(default_factory=dict)  # run key -> comparison


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


class _FigureWriter:
    """Saves figures as PNG files in the report folder and describes them for the page."""

    def __init__(self, out_dir: Path, report: Report) -> None:
        self.out_dir = out_dir
        self.report = report

    def save(self, figure: Figure, name: str, alt: str, caption: str) -> PageFigure:
        path = self.out_dir / f"{name}.png"
        figure.savefig(path, dpi=DPI)
        with Image.open(path) as image:
            width, height = image.size
        self.report.figures.append(path)
        logger.debug("wrote %s", path)
        return PageFigure(path.name, alt, caption, width, height)


def _iig_masks(run: RunRecords, feature: str) -> list[tuple[int, ...]] | None:
    """The label masks a ConvNet-IIG run was trained with for `feature`, rebuilt from its config (None if none)."""
    if not any(entry.get("name") == feature for entry in run.config.get("loss", {}).get("iig_features", [])):
        return None
    try:
        masks = iig_masks(config_from_dict(run.config), run.num_gates, run.features)
    except FacegraphError as error:
        logger.warning("%s: cannot rebuild the %s masks to outline them (%s)", run.path, feature, error)
        return None
    return next(list(m.label_gates) for m in masks if m.feature == feature)


def finding_sentence(label: str, feature: str, finding: BlockFinding) -> str:
    """One sentence: the gated block that tells most about `feature`, and for which label it opens more."""
    if finding.information_bits <= 0.0:
        return f"{label}: for {feature}, no gated block opens more for one label than for another (I = 0 bits for every block)."
    verdict = "above" if finding.above_chance else "not above"
    return (f"{label}: for {feature}, gated block {finding.block} tells most, I = {finding.information_bits:.3f} bits "
            f"({verdict} the chance level {finding.chance_bits:.3f} for the largest I of any block); it is open for "
            f"{100 * finding.most_open_rate:.0f}% of {finding.most_open_label} images (n={finding.most_open_images}) and "
            f"{100 * finding.least_open_rate:.0f}% of {finding.least_open_label} images (n={finding.least_open_images}).")


def comparison_sentence(label: str, comparison: ActiveGateComparison) -> str:
    """One sentence: do wrong predictions use fewer gates than correct ones (the paper's remark)?"""
    test = comparison.test
    if math.isnan(test.p_two_sided):
        return (f"{label}: {test.n_a} correct and {test.n_b} wrong predictions, mean active gates "
                f"{comparison.correct_mean:.2f} vs {comparison.wrong_mean:.2f}; no rank test (it needs both groups and "
                "some variation in gate counts).")
    if test.p_two_sided >= SIGNIFICANCE:
        verdict = "no significant difference, so this run does not support the paper's remark"
    elif comparison.wrong_mean < comparison.correct_mean:
        verdict = "wrong predictions use fewer gates, as the paper remarks"
    else:
        verdict = "wrong predictions use more gates, contrary to the paper's remark"
    return (f"{label}: mean active gates {comparison.correct_mean:.2f} for correct vs {comparison.wrong_mean:.2f} for wrong "
            f"predictions (of {comparison.num_gates}); Mann-Whitney U = {test.u:.0f}, AUC = {test.auc:.3f}, "
            f"p = {test.p_two_sided:.2g} (two-sided): {verdict}.")


def _curves_section(run: RunRecords, figures: _FigureWriter, slug: str) -> list:
    if not run.epochs:
        return [Paragraph(f"{run.path / 'metrics.jsonl'} is missing or empty: no curves.", note=True)]
    checkpoint = (run.evaluation or {}).get("checkpoint", BEST)
    run_dir = RunDir(run.path)
    done = read_json(run_dir.done_path) if run_dir.is_done else None
    epoch = evaluated_epoch(checkpoint, done, [int(row["epoch"]) for row in run.epochs])
    figure = plot_accuracy_curves(accuracy_series(run.epochs), f"{run.label}: accuracy per epoch", run.evaluation,
                                  run.split, final_epoch=epoch, final_checkpoint=checkpoint)
    caption = (f"Fig. 1 ({run.name}): top-1 (left) and top-5 (right) accuracy per epoch from metrics.jsonl, one line per "
               "split. The train line is the running accuracy over each epoch's training batches in training mode "
               "(augmented images, sampled gates where the model has them), not an evaluation; val scores the weights "
               "at each epoch's end with deterministic gates.")
    if run.evaluation is not None:
        if epoch is None:
            where = "its epoch is unknown (no done.json: training has not finished), so it is a dotted level"
        elif checkpoint == BEST:
            where = f"placed at epoch {epoch}, the epoch of best val top-1 (done.json)"
        else:
            where = f"placed at epoch {epoch}, the last one logged"
        caption += (f" The star is the {run.split} accuracy of {checkpoint}.pt, the checkpoint `facegraph evaluate` "
                    f"used, {where}.")
    return [figures.save(figure, f"{slug}-fig1-curves", f"accuracy curves of {run.name}", caption)]


def _chance_words(chance: ChanceLevel) -> str:
    """What a chance level is, for captions: which shuffles, how many, which quantile."""
    among = ("people (each person's images keep one label together)" if chance.by_person
             else "images (the labels differ between images of one person, so they cannot move with people)")
    return (f"the {100 * chance.quantile:.0f}th percentile, over {chance.rounds} shuffles of the labels among {among}, "
            f"of the largest I of any gated block")


def _heatmap_items(run: RunRecords, figures: _FigureWriter, slug: str, report: Report) -> list:
    images = run.images
    items: list = []
    readout = (run.evaluation or {}).get("readout", {})
    for feature, labels in run.features.items():
        codes = images.labels.get(feature)
        if codes is None:
            items.append(Paragraph(f"{feature}: no column in eval/{run.split}-images.csv.", note=True))
            continue
        known_labels = {int(c) for c in codes if c >= 0}
        if len(known_labels) < 2:
            items.append(Paragraph(f"{feature}: fewer than two labels are known among the {run.split} images "
                                   f"({int((codes >= 0).sum())} labelled); no heatmap.", note=True))
            continue
        heatmap = feature_heatmap(feature, labels, images.gates, codes, identities=images.identity)
        findings = block_findings(heatmap)
        report.features.append(FeatureResult(slug, heatmap, findings))
        masks = _iig_masks(run, feature)
        caption = (f"{run.label}, {feature}: top, the fraction of {run.split} images of each label (n images of that many "
                   f"people; labels belong to people, so a label with few people mostly shows their own graphs) for which "
                   f"each gated block ran; bottom, plug-in mutual information I(gate; {feature}) per block in bits. The "
                   f"chance level (black line) is {_chance_words(heatmap.chance)}: if no block knew anything about "
                   f"{feature}, any block would exceed it with a chance of about "
                   f"{100 * (1 - heatmap.chance.quantile):.0f}%. Unknown labels are left out.")
        if masks is not None:
            caption += " Red outlines: the gates each label's IIG mask asks to be open."
        if feature in readout and isinstance(readout[feature].get("accuracy"), (int, float)):
            accuracy, balanced, majority = confusion_scores(readout[feature].get("confusion") or [])
            caption += (f" Read-out (eq. 5, {readout[feature].get('method', '?')}): "
                        f"{100 * readout[feature]['accuracy']:.1f}% of {readout[feature].get('images', '?')} images")
            if balanced is not None:
                caption += f" (balanced {100 * balanced:.1f}%, majority label {100 * majority:.1f}%)"
            caption += "."
        probe = linear_probe(images.gates.astype(float), codes, images.identity)
        if probe is not None:
            caption += (f" Linear probe on the gate vector (fitted, {probe.folds} folds by person): "
                        f"{100 * probe.accuracy:.1f}% (balanced {100 * probe.balanced_accuracy:.1f}%, majority label "
                        f"{100 * probe.majority_rate:.1f}%).")
        title = f"{run.label}: gates by {feature.replace('_', ' ')}"
        items.append(figures.save(plot_feature_heatmap(heatmap, title, masks, split=run.split),
                                  f"{slug}-heatmap-{_slug(feature)}", f"heatmap of gate open rates by {feature} for {run.name}",
                                  caption))
        items.append(PageTable(
            ["gated block", "I (bits)", "above chance", "most open for", "least open for"],
            [[str(f.block), f"{f.information_bits:.4f}", "yes" if f.above_chance else "no",
              f"{f.most_open_label}: {100 * f.most_open_rate:.0f}% of {f.most_open_images}",
              f"{f.least_open_label}: {100 * f.least_open_rate:.0f}% of {f.least_open_images}"]
             for f in findings],
            f"Blocks that tell most about {feature} (H({feature}) = {heatmap.label_entropy:.3f} bits; chance level "
            f"{heatmap.chance.bits:.4f} bits for all blocks together)",
        ))
    return items


def _image_loader(run: RunRecords) -> Callable[[int], Image.Image | None]:
    root = Path(run.dataset.get("root", ""))

    def load(index: int) -> Image.Image | None:
        path = root / run.images.path[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError:
            logger.warning("%s: cannot read test image %s for the easy/hard grid", run.path, path)
            return None

    return load


def _easy_hard_items(run: RunRecords, figures: _FigureWriter, slug: str, report: Report, max_identities: int) -> list:
    images = run.images
    names = run.identity_names
    examples = easy_hard_examples(images.identity, images.correct, images.active_gates, max_identities)
    shown = [names[e.identity] if e.identity < len(names) else images.name[e.easy] for e in examples]
    grid = plot_easy_hard_grid(examples, shown, run.num_gates, _image_loader(run),
                               f"{run.label}: easy and hard correctly classified {run.split} images")
    grid_caption = (f"Fig. 5 ({run.name}): for the {len(examples)} identities whose correctly classified {run.split} images "
                    "differ most in active gates, the image with the fewest active gates ('easy', top) and the one with "
                    "the most ('hard', bottom). Images are read from the prepared dataset.")
    comparison = compare_active_gates(images.active_gates, images.correct, run.num_gates)
    report.active_gates[slug] = comparison
    distribution = plot_active_gate_distribution(images.active_gates, images.correct, comparison,
                                                 f"{run.label}: active gates per {run.split} image")
    test = comparison.test
    return [
        figures.save(grid, f"{slug}-fig5-easy-hard", f"easy and hard images of {run.name}", grid_caption),
        figures.save(distribution, f"{slug}-fig5-active-gates", f"active gate counts of {run.name}",
                     "Distribution of the number of active gates per image, correct vs wrong top-1 predictions "
                     "(each histogram sums to 1)."),
        PageTable(
            ["predictions", "images", "mean active gates", "median", "all gates skipped"],
            [[name, str(n), f"{mean:.2f}", f"{median:.1f}", f"{100 * none:.1f}%"] for name, n, mean, median, none in (
                ("correct", test.n_a, comparison.correct_mean, comparison.correct_median, comparison.correct_none_open),
                ("wrong", test.n_b, comparison.wrong_mean, comparison.wrong_median, comparison.wrong_none_open),
            )],
            "Active gates, correct vs wrong",
        ),
        Paragraph(comparison_sentence(run.label, comparison)),
    ]


def _run_section(run: RunRecords, figures: _FigureWriter, slug: str, report: Report, max_identities: int) -> Section:
    section = Section(f"{run.label} ({run.name})", anchor=f"run-{slug}")
    section.items.append(Paragraph(f"Run directory: {run.path.resolve()}; {len(run.epochs)} epoch(s) logged; "
                                   f"{run.num_gates} gated block(s)."))
    section.items.append(Section("Fig. 1: accuracy per epoch", level=3, items=_curves_section(run, figures, slug)))
    section.items += verification_section(run.path, figures.save, slug, run.label)
    if run.evaluation is None or run.images is None:
        section.items.append(Paragraph(f"Not evaluated on {run.split} (eval/{run.split}.json or eval/{run.split}-images.csv "
                                       f"missing): run `facegraph evaluate {run.path} --split {run.split}`.", note=True))
        return section
    if run.num_gates == 0:
        section.items.append(Paragraph("A plain ResNet: every block always runs, so there are no gate heatmaps and no "
                                       "easy/hard analysis.", note=True))
        return section
    section.items.append(Section("Figs. 2-4: gate open rates by feature", level=3, items=_heatmap_items(run, figures, slug, report)))
    section.items.append(Section("Fig. 5: easy and hard images", level=3,
                                 items=_easy_hard_items(run, figures, slug, report, max_identities)))
    return section


def _table2_section(runs: Sequence[RunRecords]) -> Section:
    """Table II over the evaluated runs; runs that differ only in their seed (and, cross-validated, their fold) share
    a row (mean ± std)."""
    models: dict[str, ModelRuns] = {}
    for run in runs:
        if run.evaluation is None or "model" not in run.config:
            continue
        config = config_from_dict(run.config)
        # Compared as parsed, so a config.json written before a key existed matches one that holds its default.
        resolved = config.to_dict()
        key = json.dumps({**resolved, "train": {**resolved["train"], "seed": None},
                          "data": {**resolved["data"], "fold": None}}, sort_keys=True)
        models.setdefault(key, ModelRuns(run.name, config)).evaluations.append(run.evaluation)
        models[key].run_dirs.append(run.path)
    if not models:
        return Section("Table II: the runs side by side", anchor="table2",
                       items=[Paragraph(f"No run has been evaluated on {runs[0].split}.", note=True)])
    header, cells = markdown_table(table_rows(list(models.values())))
    sources = "; ".join(", ".join(path.name for path in model.run_dirs) for model in models.values())
    return Section("Table II: the runs side by side", anchor="table2", items=[
        PageTable(header, cells, f"From each run's eval/{runs[0].split}.json (runs per row: {sources}); GMACs counted "
                                 f"as in `facegraph flops`: conv + linear + norm"),
    ])


def _unique_slugs(runs: Sequence[RunRecords]) -> list[str]:
    slugs: list[str] = []
    for run in runs:
        slug, suffix = _slug(run.name), 2
        while slug in slugs:
            slug, suffix = f"{_slug(run.name)}-{suffix}", suffix + 1
        slugs.append(slug)
    return slugs


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, *, split: str = "test", max_identities: int = 4) -> Report:
    """Write index.html and every figure as PNG into `out_dir` for the runs in `run_dirs`."""
    if not run_dirs:
        raise FacegraphError("report: give at least one run directory")
    runs = [read_run_records(run_dir, split) for run_dir in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / INDEX_FILE)
    figures = _FigureWriter(out, report)
    sections = [_table2_section(runs)]
    run_sections = []
    slugs = _unique_slugs(runs)
    for run, slug in zip(runs, slugs):
        logger.info("report: %s (%s)", run.name, run.label)
        run_sections.append(_run_section(run, figures, slug, report, max_identities))
    labels = {slug: run.label for run, slug in zip(runs, slugs)}
    statements = [Paragraph(finding_sentence(labels[r.run], r.heatmap.feature, r.findings[0])) for r in report.features if r.findings]
    statements += [Paragraph(comparison_sentence(labels[name], comparison)) for name, comparison in report.active_gates.items()]
    if statements:
        sections.append(Section("Measured statements", anchor="findings", items=statements))
    comparable = [(run.label, accuracy_series(run.epochs)) for run in runs if run.epochs]
    if len(comparable) > 1:
        figure = figures.save(plot_runs_comparison(comparable), "runs-val-top1", "validation top-1 of all runs",
                              "Validation top-1 accuracy per epoch of every run.")
        sections.append(Section("All runs: validation accuracy", anchor="comparison", items=[figure]))
    sections += run_sections
    sections.append(_method_section(split))
    intro = [Paragraph(f"{len(runs)} run(s): " + "; ".join(f"{run.label} ({run.path})" for run in runs) + f". "
                       f"Figures use the {split} split. Gated blocks are numbered 1..k in network order, as in the paper.")]
    report.index.write_text(render_page("facegraph report", intro, sections), encoding="utf-8")
    logger.info("report: wrote %s and %d figure(s)", report.index, len(report.figures))
    return report


def _method_section(split: str) -> Section:
    return Section("How the numbers are computed", anchor="method", items=[
        Paragraph(f"Open rate: for each label of a feature, the fraction of {split} images with that label whose gate "
                  "was open (deterministic gates, as evaluate ran them); images with an unknown label are left out."),
        Paragraph("Mutual information: the plug-in estimate I(G; F) = sum p(g, f) log2 p(g, f) / (p(g) p(f)) with "
                  "frequencies as probabilities. It cannot exceed H(F) or 1 bit (a gate is binary) and is biased upwards on "
                  "small samples, and the best of many blocks more so, hence one chance level per feature: the "
                  f"{100 * CHANCE_QUANTILE:.0f}th percentile, over {CHANCE_ROUNDS} shuffles of the labels among people "
                  "(a person's images keep one label together, as labels belong to people; among images where one "
                  "person's images carry different labels), of the largest I of any gated block. If no block knew "
                  "anything about the feature, any block would be called above it about "
                  f"{100 * (1 - CHANCE_QUANTILE):.0f}% of the time."),
        Paragraph("Easy/hard: among an identity's correctly classified images, the one with the fewest active gates is "
                  "'easy', the one with the most 'hard'. Correct vs wrong: the Mann-Whitney U statistic of active-gate "
                  "counts (average ranks for ties), AUC = U / (n_correct n_wrong), and a two-sided p-value from the "
                  "tie-corrected normal approximation."),
        Paragraph("See docs/analysis.md for details."),
    ])
