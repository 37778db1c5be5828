"""Reading run outputs (docs/run-directory.md), the Fig. 1 series and the Table II row."""

import json
import math
from pathlib import Path

import pytest

from facegraph.analysis.curves import accuracy_series, evaluated_epoch, plot_accuracy_curves
from facegraph.analysis.records import RunRecords, read_run_records
from facegraph.analysis.statistics import interval_half_width
from facegraph.analysis.table import ModelRuns, markdown_table, table_rows
from facegraph.config import config_from_dict
from facegraph.errors import DataError, FacegraphError
from facegraph.rundir import RunDir, read_image_records


def model_label(config: dict, fallback: str) -> str:
    return RunRecords(Path(fallback), config, {}, [], "test", None, None).label


def table_cells(config: dict, evaluation: dict) -> dict[str, str]:
    header, (cells,) = markdown_table(table_rows([ModelRuns("run", config_from_dict(config), [evaluation])]))
    return dict(zip(header, cells))

FEATURES = {"gender": ["male", "female"], "age": ["<35", "35-45", "45-55", ">55"]}
HEADER = "sample,path,identity,name,predicted,correct,top5_correct,confidence,gmacs,active_gates,gates,gender,age,readout_gender\n"


def test_image_records_are_parsed_and_coded(tmp_path):
    path = tmp_path / "test-images.csv"
    path.write_text(HEADER + "4,images/a.jpg,0,A,0,1,1,0.9,0.21,2,0110,female,unknown,female\n"
                             "7,images/b.jpg,1,B,0,0,1,0.4,0.12,0,0000,male,>55,female\n")
    records = read_image_records(path, FEATURES)
    assert len(records) == 2 and records.num_gates == 4
    assert records.gates.tolist() == [[0, 1, 1, 0], [0, 0, 0, 0]]
    assert records.correct.tolist() == [True, False] and records.active_gates.tolist() == [2, 0]
    assert records.labels["gender"].tolist() == [1, 0] and records.labels["age"].tolist() == [-1, 3]
    assert records.readout == {"gender": ["female", "female"]}
    assert records.path == ["images/a.jpg", "images/b.jpg"] and records.gmacs.tolist() == [0.21, 0.12]


@pytest.mark.parametrize("row, message", [
    ("4,a.jpg,0,A,0,1,1,0.9,0.21,2,01x0,female,<35,male", "line 3, column gates"),
    ("4,a.jpg,0,A,0,1,1,0.9,0.21,2,011,female,<35,male", "line 3, column gates"),
    ("4,a.jpg,zero,A,0,1,1,0.9,0.21,2,0110,female,<35,male", "line 3, column identity"),
    ("4,a.jpg,0,A,0,1,1,0.9,0.21,2,0110,woman,<35,male", "line 3, column gender: label 'woman'"),
    ("4,a.jpg,0,A,0,1,1,0.9", "line 3: 14 fields expected"),
])
def test_malformed_rows_are_named(tmp_path, row, message):
    path = tmp_path / "test-images.csv"
    path.write_text(HEADER + "1,b.jpg,0,A,0,1,1,0.9,0.21,2,0110,male,<35,male\n" + row + "\n")
    with pytest.raises(DataError, match=message) as error:
        read_image_records(path, FEATURES)
    assert str(path) in str(error.value)


def test_metrics_and_run_directory_errors(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"epoch": 1, "train": {"top1": 0.5}}\n\n{"epoch": 2, "train": {"top1": 0.6}}\nnot json\n')
    with pytest.raises(DataError, match="metrics.jsonl, line 4"):
        RunDir(tmp_path).metrics()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacegraphError, match="is not a run directory"):
        read_run_records(tmp_path / "empty")
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train": {"top1": 0.5}}\n')
    (run / "dataset.json").write_text(json.dumps({"features": FEATURES}))
    (run / "eval" / "test.json").write_text(json.dumps({"top1": 0.5, "gated_blocks": [3, 4, 5]}))
    (run / "eval" / "test-images.csv").write_text(HEADER + "1,b.jpg,0,A,0,1,1,0.9,0.21,2,0110,male,<35,male\n")
    with pytest.raises(DataError, match="rows have 4 gates but .* lists 3 gated blocks"):
        read_run_records(run)


def test_accuracy_series_and_curves():
    epochs = [{"epoch": 1, "lr": 0.1, "train": {"top1": 0.1, "top5": 0.3, "gate_rates": []}, "val": {"top1": 0.05}},
              {"epoch": 2, "train": {"top1": 0.2, "top5": 0.4}, "val": {"top1": 0.15, "top5": 0.35}}]
    series = accuracy_series(epochs)
    assert list(series) == ["train", "val"]
    assert series["train"]["top1"][0].tolist() == [1, 2] and series["train"]["top1"][1] == pytest.approx([10.0, 20.0])
    assert series["val"]["top5"][0].tolist() == [2]  # epoch 1 had no val top-5
    figure = plot_accuracy_curves(series, "run", {"top1": 0.12, "top5": 0.4}, final_epoch=1)
    top1_axes = figure.axes[0]
    assert top1_axes.get_xlabel() == "epoch" and top1_axes.get_ylabel() == "accuracy (%)"
    # The star sits at the epoch of the evaluated weights (best.pt: the best val epoch), not at the last epoch.
    star = [line for line in top1_axes.get_lines() if line.get_marker() == "*"][0]
    assert star.get_xdata().tolist() == [1] and star.get_ydata().tolist() == pytest.approx([12.0])
    legend = [text.get_text() for text in top1_axes.get_legend().get_texts()]
    assert legend == ["train (running, training mode)", "val", "test of best.pt, epoch 1 (best val): 12.0%"]
    # Without a known epoch (an unfinished run's best.pt) the score is a level across the panel, not a guessed epoch.
    unknown = plot_accuracy_curves(series, "run", {"top1": 0.12}).axes[0]
    assert not [line for line in unknown.get_lines() if line.get_marker() == "*"]
    assert "test of best.pt, epoch unknown: 12.0%" in [text.get_text() for text in unknown.get_legend().get_texts()]


def test_evaluated_epoch_is_the_epoch_of_the_evaluated_weights():
    done = {"epochs": 18, "best_epoch": 16, "best_val_top1": 0.6}
    assert evaluated_epoch("best", done, range(1, 19)) == 16
    assert evaluated_epoch("last", done, range(1, 19)) == 18
    assert evaluated_epoch("best", None, range(1, 5)) is None  # not finished: no done.json yet
    assert evaluated_epoch("last", None, []) is None


def test_model_labels_and_table_rows(tmp_path):
    assert model_label({"model": {"arch": "resnet101", "variant": "resnet"}}, "x") == "ResNet-101"
    assert model_label({"model": {"arch": "resnet50", "variant": "aig"}, "loss": {"target_rate": 0.4}}, "x") == "ConvNet-AIG [t=0.4] ResNet-50"
    iig = {"model": {"arch": "resnet50", "variant": "iig"},
           "loss": {"iig_weight": 1.0, "iig_features": [{"name": "gender"}, {"name": "age"}]}}
    assert model_label(iig, "x") == "ConvNet-IIG (Gender + Age) ResNet-50"
    assert model_label({}, "fallback") == "fallback"
    run = tmp_path / "plain"
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": {"arch": "resnet18", "variant": "resnet"}}))
    (run / "eval" / "test.json").write_text(json.dumps({"images": 10, "top1": 0.61234, "top5": 0.9,
                                                        "gmacs": {"mean": 0.25, "std": 0.0, "dense": 0.25}, "gate_rates": []}))
    records = read_run_records(run)
    row = table_cells(records.config, {**records.evaluation, "gmacs_conv_only": {"mean": 0.24}})
    # One run: top-1 with its exact binomial interval (10 images, 6 right: Clopper-Pearson 26.2 to 87.8 %).
    assert row["Model"] == "ResNet-18" and row["Top-1 test (%)"] == "61.23 [26.2, 87.8]"
    assert row["GMACs (all counted)"] == "0.250"
    assert row["Mean open rate"] == "n/a" and row["Gate read-out: gender (%)"] == "n/a"
    assert row["Measured skipping speedup"] == "n/a"


def test_readout_cell_shows_the_majority_baseline(tmp_path):
    run = tmp_path / "iig"
    (run / "eval").mkdir(parents=True)
    config = {"model": {"arch": "resnet50", "variant": "iig"},
              "loss": {"iig_weight": 1.0, "iig_features": [{"name": "gender"}]}}
    (run / "config.json").write_text(json.dumps(config))
    confusion = [[358, 0], [59, 0]]  # every image read out as the first label
    (run / "eval" / "test.json").write_text(json.dumps({"top1": 0.2, "top5": 0.4, "gated_blocks": [1, 2],
        "gmacs": {"mean": 0.2}, "gmacs_conv_only": {"mean": 0.2}, "readout": {
        "gender": {"accuracy": 358 / 417, "confusion": confusion}}}))
    records = read_run_records(run)
    row = table_cells(records.config, records.evaluation)
    share = f"{100 * 358 / 417:.2f}"
    assert row["Gate read-out: gender (%)"] == f"{share} (balanced 50.00, majority {share})"


def _paired_run(root: Path, name: str, variant: str, fold: int, correct: dict[int, int]) -> Path:
    """A run directory with what paired_rows reads: config (cross-validation fold), test.json, test-images.csv."""
    run = root / name
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": {"arch": "resnet50", "variant": variant},
                                                 "data": {"folds": 3, "fold": fold}}))
    (run / "dataset.json").write_text(json.dumps({"splits": {"train": 4, "val": 1, "test": len(correct)}}))
    lines = [f"{sample},images/{sample}.jpg,0,A,0,{right},1,0.9,0.2,0,\n" for sample, right in correct.items()]
    (run / "eval" / "test-images.csv").write_text(
        "sample,path,identity,name,predicted,correct,top5_correct,confidence,gmacs,active_gates,gates\n"
        + "".join(lines))
    return run


def _paired_models(runs: dict[str, list[Path]]) -> list[ModelRuns]:
    models = []
    for variant, run_dirs in runs.items():
        evaluations = []
        for run_dir in run_dirs:
            records = read_image_records(run_dir / "eval" / "test-images.csv", {})
            evaluations.append({"top1": float(records.correct.mean()), "gmacs": {"mean": 1.0}})
        config = config_from_dict(json.loads((run_dirs[0] / "config.json").read_text()))
        models.append(ModelRuns(variant, config, evaluations, run_dirs))
    return models


def test_paired_rows_refuse_runs_tested_on_different_images(tmp_path):
    from facegraph.analysis.table import paired_rows
    resnet = _paired_run(tmp_path, "resnet", "resnet", 0, {1: 1, 2: 1, 3: 0})
    aig = _paired_run(tmp_path, "aig", "aig", 0, {4: 1, 5: 1, 6: 0})
    with pytest.raises(DataError, match="tested on different images .0 shared of 3 and 3."):
        paired_rows(_paired_models({"resnet": [resnet], "aig": [aig]}))


def test_pooled_folds_say_how_many_of_the_folds_they_hold(tmp_path):
    from facegraph.analysis.table import paired_markdown, paired_rows

    def pooled_line(folds: list[int]) -> str:
        root = tmp_path / "-".join(map(str, folds))
        runs = {"resnet": [], "aig": []}
        for fold in folds:  # each fold tests its own two photos; the AIG model misses one the ResNet gets
            samples = (2 * fold, 2 * fold + 1)
            runs["resnet"].append(_paired_run(root, f"resnet{fold}", "resnet", fold, dict.fromkeys(samples, 1)))
            runs["aig"].append(_paired_run(root, f"aig{fold}", "aig", fold, {samples[0]: 1, samples[1]: 0}))
        (row,) = paired_rows(_paired_models(runs))
        assert row.pooled.total == 2 * len(folds) and row.pooled.b01 == len(folds)
        return next(line for line in paired_markdown([row]) if line.startswith("Cross-validation"))

    assert pooled_line([0, 1, 2]).startswith("Cross-validation, every photo tested once: ConvNet-AIG [t=0.5] minus ResNet -50.00 points over 6 test images")
    assert pooled_line([0, 2]).startswith("Cross-validation, 2 of 3 folds, each photo tested at most once:")


def test_cross_validation_findings_are_decided_by_the_corrected_interval(tmp_path):
    from facegraph.analysis.table import paired_markdown, paired_rows
    runs = {"resnet": [], "aig": []}
    for fold, wrong in enumerate((2, 3, 4)):  # 10 test photos per fold; the AIG model misses 2, 3, 4 more
        samples = range(10 * fold, 10 * fold + 10)
        runs["resnet"].append(_paired_run(tmp_path, f"resnet{fold}", "resnet", fold, dict.fromkeys(samples, 1)))
        runs["aig"].append(_paired_run(tmp_path, f"aig{fold}", "aig", fold,
                                       {s: int(s - 10 * fold >= wrong) for s in samples}))
    (row,) = paired_rows(_paired_models(runs))
    plain, corrected = row.difference, row.corrected
    assert plain.differences == pytest.approx((-20.0, -30.0, -40.0))
    assert corrected.test_train_ratio == pytest.approx(10 / 4)  # dataset.json: 10 test, 4 train images per fold
    assert plain.supported and not corrected.supported
    line = next(line for line in paired_markdown([row]) if line.startswith("| ConvNet-AIG"))
    assert line.split(" | ")[2] == f"{plain.low:+.2f} to {plain.high:+.2f}"
    assert line.split(" | ")[3] == f"{corrected.low:+.2f} to {corrected.high:+.2f}"
    assert "not resolved (the corrected interval includes 0)" in line
    # What the fold's 10 test photos alone put into that interval: McNemar variances (k - k^2/10) / 100 for k = 2, 3, 4.
    variances = [(k - k * k / 10) / 100 for k in (2, 3, 4)]
    assert 100 * row.floor.std == pytest.approx(100 * math.sqrt(sum(variances) / 3))
    floor_line = next(line for line in paired_markdown([row]) if line.startswith("Test images alone"))
    assert f"± {100 * row.floor.std:.2f} points from fold to fold" in floor_line
    assert f"(it is ± {(corrected.high - corrected.low) / 2:.2f})" in floor_line
    assert f"interval would be ± {100 * row.floor.half_width:.2f}" in floor_line
    assert row.floor.half_width == pytest.approx(interval_half_width(row.floor.std, 3, test_train_ratio=10 / 4))


def test_seeds_on_one_split_get_no_test_sampling_floor(tmp_path):
    from facegraph.analysis.table import paired_markdown, paired_rows
    runs = {"resnet": [], "aig": []}
    for seed, wrong in enumerate((1, 3)):  # both seeds test the same photos 0-9
        runs["resnet"].append(_paired_run(tmp_path, f"resnet{seed}", "resnet", 0, dict.fromkeys(range(10), 1)))
        runs["aig"].append(_paired_run(tmp_path, f"aig{seed}", "aig", 0, {s: int(s >= wrong) for s in range(10)}))
    (row,) = paired_rows(_paired_models(runs))
    assert row.difference.has_interval and row.corrected is None and row.floor is None
    assert not any(line.startswith("Test images alone") for line in paired_markdown([row]))


def test_a_column_known_for_one_seed_of_several_has_no_spread():
    config = config_from_dict({"model": {"arch": "resnet50", "variant": "resnet"}})
    verified = {"verification": {"results": {"plain": {"accuracy_mean": 0.9}}}}
    evaluations = [{"top1": 0.5, **verified}, {"top1": 0.7}, {"top1": 0.6}]
    (row,) = table_rows([ModelRuns("run", config, evaluations)])
    assert row["top1_std"] == pytest.approx(10.0) and row["verify_std"] is None
    header, (cells,) = markdown_table([row])
    assert dict(zip(header, cells))["Top-1 test (%)"] == "60.00 ± 10.00"
    assert "90.00 (1 of 3 seeds)" in cells


def test_the_overlap_correction_counts_only_the_images_a_fold_trained_on(tmp_path):
    """Runs written before the carved validation part had its own split counted it in "train": n_train is what the
    model trained on either way, so the same folds give the same n_test / n_train."""
    from facegraph.analysis.table import _test_train_ratio

    older, newer = tmp_path / "older", tmp_path / "newer"
    for run, summary in ((older, {"splits": {"train": 3459, "test": 865}, "val_from_train": 350}),
                         (newer, {"splits": {"train": 3109, "val": 350, "test": 865}, "val_from_train": 350})):
        run.mkdir()
        (run / "dataset.json").write_text(json.dumps(summary))
    assert _test_train_ratio([older]) == pytest.approx(865 / 3109)
    assert _test_train_ratio([newer]) == pytest.approx(865 / 3109)
