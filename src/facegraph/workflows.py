"""Orchestration above the engine and the analysis: `facegraph table2` and `facegraph demo` train what is missing,
evaluate, tabulate (analysis.table) and report (analysis.report). Finished runs are reused only when their config is
the one asked for."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from facegraph.analysis.table import ModelRuns, paired_rows, table_rows, write_table
from facegraph.config import RunConfig, config_differences, describe_differences, list_presets, load_config
from facegraph.data import Selection, load_prepared, prepare_lfw
from facegraph.data.sources.lfw import LFW_FOLDER
from facegraph.engine.evaluate import evaluate_run
from facegraph.engine.train import train
from facegraph.errors import ConfigError, DataError, FacegraphError
from facegraph.rundir import RunDir

logger = logging.getLogger(__name__)

# The six models of the paper's Table II, in its row order, per preset folder.
TABLE2_ROWS = {
    "paper": ["resnet101", "aig-t0.4", "aig-t0.5", "aig-t0.7", "iig-gender", "iig-gender-age"],
    "cpu": ["resnet50", "aig-t0.4", "aig-t0.5", "aig-t0.7", "iig-gender", "iig-gender-age"],
}
DEMO_MODELS = ("resnet50", "aig-t0.5", "iig-gender")
DEMO_IMAGE_SIZE = 64
DEMO_SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}
# The cpu presets train 72 epochs; the demo trains a quarter of that so that its three models fit in 10 minutes on 2
# cores (18 epochs are short of convergence: docs/results.md measures 18, 36 and 72).
DEMO_EPOCHS = 18


def ensure_run(config: RunConfig, data: Path, run_dir: Path) -> dict:
    """Train (or resume) a run unless it finished with this very config; return its eval/test.json."""
    run = RunDir(run_dir)
    if run.config_path.is_file():
        differing = config_differences(run.config().to_dict(), config.to_dict())
        if differing and run.is_done:
            changes = describe_differences(differing)
            raise ConfigError(f"{run_dir} finished with another configuration ({changes}); remove it or choose "
                              f"another --out")
    if run.is_done:
        logger.info("reusing finished run %s", run_dir)
    else:
        train(config, data, run_dir, resume=run.config_path.is_file())
    evaluation = run.evaluation("test")
    if evaluation is not None and evaluation.get("checkpoint", "best") != "best":
        # `evaluate --checkpoint last` rewrote it: the table compares the checkpoints chosen on val.
        logger.warning("%s: eval/test.json holds %s.pt; evaluating best.pt again for the table", run_dir,
                       evaluation["checkpoint"])
        evaluation = None
    if evaluation is None and "test" in run.dataset().get("splits", {}):
        logger.info("%s has no test evaluation of best.pt: evaluating it", run_dir)
        evaluate_run(run_dir, "test", data_root=data)
        evaluation = run.evaluation("test")
    if evaluation is None:
        raise FacegraphError(f"{run_dir} finished without a test evaluation: the dataset needs a test split")
    return evaluation


def check_folds(data: Path, folds: int, fold_seed: int) -> None:
    """Refuse, before anything trains, a cross-validation with a fold that would test on no photo."""
    dataset = load_prepared(data)
    for fold in range(folds):
        if not dataset.cross_validation_fold(folds, fold, fold_seed).split_indices("test"):
            raise ConfigError(f"--folds {folds}: fold {fold} of {data} would hold no test image "
                              f"({len(dataset.samples)} photos); use fewer folds")


@dataclass(frozen=True)
class VerificationPairs:
    """Pairs every Table II model is also verified on: an LFW pairs file over an LFW-layout folder."""

    pairs: Path
    images: Path
    # The crop for these photos when the runs were trained on other face crops; several: chosen per fold (verify).
    center_crop: tuple[float, ...] | None = None


def verify_run(run_dir: Path, verification: VerificationPairs) -> dict:
    """The run's verification summary on the pairs (computed once, then read from RUN/verify/<pairs stem>/ while its
    centre crops are the ones asked for)."""
    from facegraph.engine.trained import load_trained
    from facegraph.recognition.run_verification import lfw_pair_set, verify_pairs

    summary = RunDir(run_dir).verification_summary(verification.pairs.stem)
    if summary is not None:
        crops = summary.get("center_crops", [summary["preprocessing"]["center_crop"]])
        if verification.center_crop is None or crops == list(verification.center_crop):
            return summary
    trained = load_trained(run_dir)
    pair_set = lfw_pair_set(trained, verification.pairs, verification.images, verification.center_crop)
    return verify_pairs(trained, pair_set, flip=True).summary


@dataclass(frozen=True)
class WarmStart:
    """Fine-tune every row from the table's own ResNet run of the same seed, as ConvNet-AIG's --pretrained: the
    ResNet row too (from itself), so that every row has the same total number of epochs and the same schedule. Each
    fine-tuning run inherits the preset folder's `finetune.toml` instead of its `base.toml`; `overrides` apply to the
    fine-tuning runs only, after the table's own --set."""

    overrides: tuple[str, ...] = ()


def run_table2(preset: str, data: str | Path, out: str | Path, *, seeds: int = 1,
               overrides: list[str] | None = None, models: list[str] | None = None,
               verification: VerificationPairs | None = None,
               warm_start: WarmStart | None = None, folds: int = 0, fold_seed: int = 0) -> tuple[Path, list[dict]]:
    """Train/evaluate each model of Table II (reusing finished runs) and write table2.md / table2.csv in `out`; with
    `verification`, every run is also verified on the same pairs (a column of the table); with `warm_start`, every
    row fine-tunes from the ResNet run `<resnet>-seed<s>` trained first; with `folds` = k, seed s trains and tests on
    cross-validation fold s (`data.folds`) of the partition `fold_seed` deals (`data.fold_seed`)."""
    if preset not in TABLE2_ROWS:
        raise FacegraphError(f"unknown preset {preset!r}; choose one of {', '.join(TABLE2_ROWS)}")
    names = models or TABLE2_ROWS[preset]
    unknown = [name for name in names if f"{preset}/{name}" not in list_presets()]
    if unknown:
        raise FacegraphError(f"--models: {preset} has no preset {', '.join(unknown)} (it has: "
                             f"{', '.join(TABLE2_ROWS[preset])})")
    if folds and seeds > folds:
        raise FacegraphError(f"{seeds} seeds on {folds} folds: one seed per fold at most")
    if fold_seed and not folds:
        raise FacegraphError("a fold seed deals the photos into cross-validation folds: give the number of folds too")
    out, data = Path(out), Path(data)
    if folds:
        check_folds(data, folds, fold_seed)

    def seed_overrides(seed: int) -> list[str]:
        fold = [f"data.folds={folds}", f"data.fold={seed}", f"data.fold_seed={fold_seed}"] if folds else []
        return [*(overrides or []), f"train.seed={seed}", *fold]

    # Every config is loaded (and validated) before the first run starts.
    configs = {name: [load_config(f"{preset}/{name}", seed_overrides(seed)) for seed in range(seeds)]
               for name in names}
    suffix = ""
    if warm_start is not None:
        base = next((name for name in names if configs[name][0].model.variant == "resnet"), None)
        if base is None:
            raise FacegraphError("a warm-started table fine-tunes from its ResNet row: add one to --models, or pass "
                                 "--from-scratch")
        suffix, base_configs = "-ft", configs[base]
        configs = {name: [load_config(f"{preset}/{name}", [
            *seed_overrides(seed), *warm_start.overrides, f"model.init_from={str(out / f'{base}-seed{seed}')!r}"],
            parent="finetune") for seed in range(seeds)] for name in names}
        out.mkdir(parents=True, exist_ok=True)
        for seed, config in enumerate(base_configs):
            ensure_run(config, data, out / f"{base}-seed{seed}")
    out.mkdir(parents=True, exist_ok=True)
    rows_in = []
    for name, seed_configs in configs.items():
        model = ModelRuns(name, seed_configs[0])
        for seed, config in enumerate(seed_configs):
            run_dir = out / f"{name}{suffix}-seed{seed}"
            evaluation = ensure_run(config, data, run_dir)
            if verification is not None:
                evaluation = {**evaluation, "verification": verify_run(run_dir, verification)}
            model.evaluations.append(evaluation)
            model.run_dirs.append(run_dir)
        rows_in.append(model)
    rows = table_rows(rows_in)
    title = f"{preset} preset, {seeds} seed{'s' if seeds > 1 else ''}"
    if folds:
        title += f", seed s on cross-validation fold s of {folds}" + (f" (fold seed {fold_seed})" if fold_seed else "")
    if warm_start is not None:
        first = configs[names[0]][0]
        epochs = {name: configs[name][0].train.epochs for name in names}
        others = ", ".join(f"{name} {count}" for name, count in epochs.items() if count != first.train.epochs)
        title += (f", every row fine-tuned {first.train.epochs} epoch{'s' if first.train.epochs != 1 else ''}"
                  f"{f' ({others})' if others else ''} at lr {first.optim.lr:g} from the ResNet run of its seed "
                  f"({preset}/finetune.toml)")
    markdown, _ = write_table(rows, out, title, paired_rows(rows_in))
    return markdown, rows


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
    (like FACEGRAPH_DATA) or the LFW folder itself; without it LFW is downloaded into the user cache."""
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
    """The main job: LFW at CPU scale, a ResNet, a ConvNet-AIG and a ConvNet-IIG (gender), each trained DEMO_EPOCHS
    epochs (`overrides` may change that), tabulated and reported."""
    out = Path(out)
    configs = {name: load_config(f"cpu/{name}", [f"train.epochs={DEMO_EPOCHS}", *(overrides or [])])
               for name in DEMO_MODELS}
    dataset = prepared_lfw(out, Path(data) if data is not None else None)
    runs, models = {}, []
    for name, config in configs.items():
        runs[name] = out / "runs" / name
        models.append(ModelRuns(name, config, [ensure_run(config, dataset, runs[name])], [runs[name]]))
    rows = table_rows(models)
    table, _ = write_table(rows, out, "cpu demo on LFW, one seed", paired_rows(models))
    report_path = None
    if report:
        from facegraph.analysis.report import write_report  # matplotlib loads only when a report is written

        report_path = write_report(list(runs.values()), out / "report").index
    return DemoResult(out, dataset, runs, table, rows, report_path)
