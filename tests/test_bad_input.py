"""Bad input to train, evaluate, table2, report, predict and flops (issue 9; `prepare` is in test_data_bad_input.py).

Every refusal is exit code 2 with one stderr line naming the file, key or value, and no traceback; a refused
command writes nothing. Fixtures are tiny synthetic datasets made here (4 people x 10 photos, 32 px)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from facegraph.cli import main
from facegraph.data import Selection, prepare_folder

CONFIG = "cpu/aig-t0.5"
# One fast epoch: a CIFAR-style ResNet-20 at 32 px, one step per epoch on the synthetic data.
TINY = ["model.arch=resnet20", "train.epochs=1", "train.min_steps=0", "train.batch_size=16", "train.eval_batch_size=64",
        "train.precision='fp32'", "train.channels_last=false", "train.threads=1"]
COLOURS = {"Ann_Able": (200, 40, 40), "Bob_Baker": (40, 200, 40), "Cid_Cole": (40, 40, 200),
           "Dee_Dunn": (200, 200, 40), "Eve_Ewing": (40, 200, 200)}


def _photos(root: Path, names: list[str], make: Callable[..., Path]) -> Path:
    for index, name in enumerate(names):
        for number in range(10):
            make(root / name / f"{name}_{number + 1:04d}.jpg", COLOURS[name], noise_seed=100 * index + number)
    return root


def _prepare(photos: Path, out: Path) -> Path:
    prepare_folder(photos, out, Selection(image_size=32, split={"train": 0.6, "val": 0.2, "test": 0.2}, seed=3,
                                          workers=1))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_make_photo) -> Path:
    """Ann, Bob, Cid, Dee: 10 photos each, 32 px, split 60/20/20."""
    root = tmp_path_factory.mktemp("bad-input")
    return _prepare(_photos(root / "photos", list(COLOURS)[:4], data_make_photo), root / "four")


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory, data_make_photo) -> Path:
    """Other people (Bob, Cid, Dee, Eve): same size and split."""
    root = tmp_path_factory.mktemp("bad-input-other")
    return _prepare(_photos(root / "photos", list(COLOURS)[1:], data_make_photo), root / "other")


def train_args(data: Path, out: Path, *extra: str, overrides: list[str] | None = None) -> list[str]:
    args = ["train", "--config", CONFIG, "--data", str(data), "--out", str(out), *extra]
    for assignment in TINY if overrides is None else overrides:
        args += ["--set", assignment]
    return args


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "finished"
    assert main(train_args(dataset, run)) == 0
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run this test may change."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


def one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"facegraph {command}: error:"), lines[0]
    return lines[0]


def files_of(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


# --- checkpoints ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"not a checkpoint at all\n", bytes(range(256)) * 4, b"PK\x03\x04truncated"],
                         ids=["text", "garbage", "truncated-zip"])
def test_a_garbage_checkpoint_is_one_line_in_train_resume_and_evaluate(run_copy, dataset, content, capsys):
    capsys.readouterr()
    (run_copy / "checkpoints" / "last.pt").write_bytes(content)
    assert main(train_args(dataset, run_copy, "--resume")) == 2
    line = one_line_error(capsys, "train")
    assert "last.pt cannot be read (corrupt" in line and len(line) < 400, line
    (run_copy / "checkpoints" / "best.pt").write_bytes(content)
    assert main(["evaluate", str(run_copy), "--no-timing"]) == 2
    line = one_line_error(capsys, "evaluate")
    assert "best.pt cannot be read (corrupt" in line and len(line) < 400, line


def test_a_checkpoint_that_is_not_facegraphs_is_one_line(run_copy, capsys):
    capsys.readouterr()
    torch.save({"weights": torch.zeros(2)}, run_copy / "checkpoints" / "best.pt")
    assert main(["evaluate", str(run_copy), "--no-timing"]) == 2
    assert "not a facegraph checkpoint" in one_line_error(capsys, "evaluate")


# --- resume --------------------------------------------------------------------------------------------------------

def test_resume_of_a_folder_that_does_not_exist_is_refused(dataset, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(train_args(dataset, missing, "--resume")) == 2
    line = one_line_error(capsys, "train")
    assert str(missing) in line and "--resume" in line
    assert not missing.exists()


def test_resume_with_another_dataset_is_refused(run_copy, other_dataset, capsys):
    capsys.readouterr()
    before = files_of(run_copy)
    assert main(train_args(other_dataset, run_copy, "--resume")) == 2
    line = one_line_error(capsys, "train")
    assert str(other_dataset) in line and "not the dataset" in line
    assert files_of(run_copy) == before


def test_resume_with_a_changed_config_key_names_it(run_copy, dataset, capsys):
    capsys.readouterr()
    before = files_of(run_copy)
    assert main(train_args(dataset, run_copy, "--resume", overrides=[*TINY, "optim.lr=0.05"])) == 2
    line = one_line_error(capsys, "train")
    assert "optim.lr: 0.1 -> 0.05" in line
    assert "train.epochs" in line  # says what may change
    assert files_of(run_copy) == before


def test_resume_with_fewer_epochs_is_refused(run_copy, dataset, capsys):
    capsys.readouterr()
    config = json.loads((run_copy / "config.json").read_text())
    config["train"]["epochs"] = 3
    (run_copy / "config.json").write_text(json.dumps(config))
    assert main(train_args(dataset, run_copy, "--resume", overrides=[*TINY, "train.epochs=2"])) == 2
    assert "train.epochs 2 is shorter" in one_line_error(capsys, "train")


def test_resume_with_more_epochs_continues_the_run(run_copy, dataset):
    first = (run_copy / "metrics.jsonl").read_text().splitlines()
    assert main(train_args(dataset, run_copy, "--resume", overrides=[*TINY, "train.epochs=2"])) == 0
    rows = (run_copy / "metrics.jsonl").read_text().splitlines()
    assert rows[:1] == first and [json.loads(row)["epoch"] for row in rows] == [1, 2]
    assert json.loads((run_copy / "done.json").read_text())["epochs"] == 2
    assert json.loads((run_copy / "config.json").read_text())["train"]["epochs"] == 2


def test_a_second_train_into_a_run_is_refused(finished_run, dataset, capsys):
    capsys.readouterr()
    assert main(train_args(dataset, finished_run)) == 2
    assert "--resume" in one_line_error(capsys, "train")


def test_table2_refuses_to_reuse_a_run_finished_with_another_config(dataset, tmp_path, capsys):
    out = tmp_path / "table2"
    args = ["table2", "--preset", "cpu", "--data", str(dataset), "--out", str(out), "--models", "aig-t0.5",
            "--from-scratch"]
    assert main([*args, *sum((["--set", a] for a in TINY), [])]) == 0
    capsys.readouterr()
    longer = [*TINY, "train.epochs=2"]
    assert main([*args, *sum((["--set", a] for a in longer), [])]) == 2
    line = one_line_error(capsys, "table2")
    assert "train.epochs: 1 -> 2" in line and "aig-t0.5-seed0" in line


# --- output paths --------------------------------------------------------------------------------------------------

def test_train_out_under_a_file_is_one_line(dataset, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(train_args(dataset, blocker / "run")) == 2
    assert f"--out {blocker / 'run'} lies under {blocker}, which is a file" in one_line_error(capsys, "train")
    assert blocker.read_text() == "x"


def test_train_out_that_is_a_file_is_one_line(dataset, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(train_args(dataset, blocker)) == 2
    assert f"--out {blocker} is a file, not a folder" in one_line_error(capsys, "train")
    assert main(train_args(dataset, blocker, "--resume")) == 2
    assert f"--out {blocker} is a file" in one_line_error(capsys, "train")
    assert blocker.read_text() == "x"


def test_report_out_that_is_a_file_is_one_line(finished_run, tmp_path, capsys):
    blocker = tmp_path / "report.html"
    blocker.write_text("x")
    capsys.readouterr()
    assert main(["report", str(finished_run), "--out", str(blocker)]) == 2
    assert f"--out {blocker} is a file, not a folder" in one_line_error(capsys, "report")
    assert main(["report", str(finished_run), "--out", str(blocker / "sub")]) == 2
    assert "which is a file" in one_line_error(capsys, "report")
    assert blocker.read_text() == "x"


def test_table2_out_that_is_a_file_is_one_line(dataset, tmp_path, capsys):
    blocker = tmp_path / "table"
    blocker.write_text("x")
    assert main(["table2", "--preset", "cpu", "--data", str(dataset), "--out", str(blocker)]) == 2
    assert f"--out {blocker} is a file" in one_line_error(capsys, "table2")


def test_a_checkpoint_that_is_a_folder_is_one_line(run_copy, capsys):
    capsys.readouterr()
    best = run_copy / "checkpoints" / "best.pt"
    best.unlink()
    best.mkdir()
    assert main(["evaluate", str(run_copy), "--no-timing"]) == 2
    assert "best.pt is a folder" in one_line_error(capsys, "evaluate")


def test_a_missing_best_checkpoint_is_an_error_not_a_fallback(run_copy, capsys):
    capsys.readouterr()
    (run_copy / "checkpoints" / "best.pt").unlink()
    assert main(["evaluate", str(run_copy), "--no-timing"]) == 2
    assert "best.pt does not exist" in one_line_error(capsys, "evaluate")


# --- configuration values ------------------------------------------------------------------------------------------

BAD_VALUES = [
    ("train.threads=-1", "train.threads"),
    ("model.gate_hidden=0", "model.gate_hidden"),
    ("gumbel.final_temperature=0", "gumbel.final_temperature"),
    ("gumbel.final_temperature=-1.0", "gumbel.final_temperature"),
    ("gumbel.final_noise=-0.1", "gumbel.final_noise"),
    ("train.select_from=1.0", "train.select_from"),
    ("train.select_rate_slack=-0.1", "train.select_rate_slack must be a finite number >= 0, got -0.1"),
    ("data.val_split='test'", "data.val_split"),
    ("train.precision='fp16'", "train.precision"),  # the cpu presets use train.device = 'cpu'
    ("train.device='tpu'", "train.device"),
    ("train.epochs=0", "train.epochs"),
    ("train.batch_size=1", "train.batch_size"),
    ("model.width=0", "model.width"),
    ("optim.lr=-0.1", "optim.lr"),
    # torch's SGD refuses these, after the run directory was written
    ("optim.momentum=-1", "optim.momentum must be a finite number >= 0, got -1.0"),
    ("optim.weight_decay=-1", "optim.weight_decay must be a finite number >= 0, got -1.0"),
    # inf or values that cannot mean anything used to train (or diverge) into a run that cannot be resumed
    ("optim.lr=inf", "optim.lr must be a finite number > 0, got inf"),
    ("optim.momentum=1", "optim.momentum must be < 1"),
    ("optim.gate_lr_factor=inf", "optim.gate_lr_factor must be a finite number > 0, got inf"),
    ("optim.warmup_epochs=inf", "optim.warmup_epochs must be a finite number >= 0, got inf"),
    ("optim.step_gamma=2", "optim.step_gamma must be a finite number > 0 and <= 1, got 2.0"),
    ("optim.step_milestones=[0, 3]", "optim.step_milestones must be epochs >= 1, got [0, 3]"),
    ("model.width=inf", "model.width must be a finite number > 0, got inf"),
    ("gumbel.temperature=inf", "gumbel.temperature must be a finite number > 0, got inf"),
    ("gumbel.final_temperature=inf", "gumbel.final_temperature must be a finite number > 0, got inf"),
    ("gumbel.noise=inf", "gumbel.noise must be a finite number >= 0, got inf"),
    ("gumbel.final_noise=nan", "gumbel.final_noise must be a finite number >= 0, got nan"),
    ("loss.target_weight=-1", "loss.target_weight must be a finite number >= 0, got -1.0"),
    ("loss.target_weight=inf", "loss.target_weight must be a finite number >= 0, got inf"),
    ("loss.unmasked_target_weight=-1", "loss.unmasked_target_weight must be a finite number >= 0, got -1.0"),
    ("loss.iig_weight=nan", "loss.iig_weight must be a finite number >= 0, got nan"),
    ("loss.margin_m=inf", "loss.margin_m must be a finite number >= 0, got inf"),
    ("loss.margin_scale=inf", "loss.margin_scale must be a finite number > 0, got inf"),
    ("loss.distill_temperature=inf", "loss.distill_temperature must be a finite number > 0, got inf"),
    ("loss.distill_weight=-1", "loss.distill_weight must be a finite number >= 0, got -1.0"),
]


@pytest.mark.parametrize(("assignment", "key"), BAD_VALUES, ids=[a for a, _ in BAD_VALUES])
def test_a_bad_config_value_is_refused_before_anything_is_written(dataset, tmp_path, assignment, key, capsys):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, overrides=[*TINY, assignment])) == 2
    assert key in one_line_error(capsys, "train")
    assert not out.exists()


def test_nesterov_without_momentum_is_refused_before_anything_is_written(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, overrides=[*TINY, "optim.momentum=0", "optim.nesterov=true"])) == 2
    assert "optim.nesterov = true needs optim.momentum > 0, got 0.0" in one_line_error(capsys, "train")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    for device in ("cuda", "auto"):  # auto picks the CPU: fp16 then needs CUDA too
        assert main(train_args(dataset, out, overrides=[*TINY, f"train.device='{device}'",
                                                        "train.precision='fp16'"])) == 2
        assert "CUDA" in one_line_error(capsys, "train")
    assert main(train_args(dataset, out, overrides=[*TINY, "train.device='cuda'"])) == 2
    assert "train.device" in one_line_error(capsys, "train")
    assert not out.exists()


def test_an_unknown_set_key_is_reported_against_set(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, overrides=[*TINY, "train.epoch=3"])) == 2
    line = one_line_error(capsys, "train")
    assert "--set train.epoch" in line and "unknown key 'epoch' in [train]" in line
    assert main(train_args(dataset, out, overrides=[*TINY, "train.epochs.value=3"])) == 2
    assert "--set train.epochs.value" in one_line_error(capsys, "train")
    assert main(train_args(dataset, out, overrides=[*TINY, "modle.arch=resnet18"])) == 2
    assert "--set modle.arch" in one_line_error(capsys, "train")
    assert not out.exists()


def test_a_config_file_that_does_not_exist_is_one_line(dataset, tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.toml"), "--data", str(dataset),
                 "--out", str(tmp_path / "run")]) == 2
    assert "nope.toml" in one_line_error(capsys, "train")


# (key of prepare.json -> a malformed value, what the error names): each used to be a traceback, the last in epoch 1
BAD_PREPARE_JSON = [
    ({"normalization": {}}, "'normalization.mean' is missing"),
    ({"image_size": "32px"}, "image_size is '32px'"),
    ({"features": ["gender"]}, "features is ['gender']"),
    ({"counts": 5}, "counts is 5"),
    ({"normalization": {"mean": [0.5], "std": [0.5, 0.5, 0.5]}}, "normalization.mean is [0.5]"),
]


@pytest.mark.parametrize(("edit", "expected"), BAD_PREPARE_JSON, ids=[json.dumps(e) for e, _ in BAD_PREPARE_JSON])
def test_a_malformed_prepare_json_is_one_line_before_anything_is_written(dataset, tmp_path, edit, expected, capsys):
    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns("cache"))
    info = json.loads((data / "prepare.json").read_text(encoding="utf-8"))
    (data / "prepare.json").write_text(json.dumps({**info, **edit}), encoding="utf-8")
    out = tmp_path / "run"
    assert main(train_args(data, out)) == 2
    line = one_line_error(capsys, "train")
    assert str(data / "prepare.json") in line and expected in line, line
    assert not out.exists()


def test_a_dataset_that_does_not_exist_is_one_line(tmp_path, capsys):
    assert main(train_args(tmp_path / "no-data", tmp_path / "run")) == 2
    assert "no-data" in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


# --- flops ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", ["0", "-5", "16", "abc"])
def test_flops_refuses_a_bad_image_size(size, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["flops", "--image-size", size])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--image-size" in err and size in err and "Traceback" not in err


def test_flops_of_resnet18_at_a_target_rate(capsys):
    assert main(["flops", "--arch", "resnet18", "--target", "0.5", "--image-size", "32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arch"] == "resnet18" and report["schedule"]["gated_blocks"] > 0
    assert report["expected_gmacs"]["all"] < report["dense_gmacs"]["all"]


@pytest.mark.parametrize(("argv", "option"), [(["--target", "1.5"], "--target"), (["--width", "0"], "--width"),
                                              (["--num-classes", "0"], "--num-classes")])
def test_flops_refuses_out_of_range_options(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["flops", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


# --- runs that move, runs not finished -----------------------------------------------------------------------------

def test_evaluate_after_the_dataset_moved_suggests_data_and_data_works(dataset, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    run = tmp_path / "run"
    assert main(train_args(data, run)) == 0
    moved = tmp_path / "moved"
    data.rename(moved)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--no-timing"]) == 2
    line = one_line_error(capsys, "evaluate")
    assert str(data) in line and "--data" in line
    assert main(["evaluate", str(run), "--no-timing", "--data", str(moved), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 8


def test_evaluate_with_the_data_of_another_dataset_is_refused(finished_run, other_dataset, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(finished_run), "--no-timing", "--data", str(other_dataset)]) == 2
    line = one_line_error(capsys, "evaluate")
    assert str(other_dataset) in line and "fingerprint" in line


def test_evaluate_of_a_missing_split_or_run_is_one_line(finished_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(finished_run), "--no-timing", "--split", "holdout"]) == 2
    assert "'holdout'" in one_line_error(capsys, "evaluate")
    assert main(["evaluate", str(tmp_path / "no-run"), "--no-timing"]) == 2
    assert "no-run" in one_line_error(capsys, "evaluate")


def test_evaluate_and_predict_on_an_unfinished_run_warn(run_copy, dataset, caplog, capsys):
    (run_copy / "done.json").unlink()
    photo = next((dataset / "images").rglob("*.*")) if (dataset / "images").is_dir() else \
        next(p for p in dataset.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(run_copy), "--no-timing"]) == 0
        assert main(["predict", str(run_copy), str(photo)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("has not finished training" in w for w in warnings) == 2, warnings


def test_a_finished_run_trains_and_evaluates_without_an_unfinished_warning(dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(train_args(dataset, tmp_path / "run")) == 0
    assert not [r for r in caplog.records if "has not finished training" in r.getMessage()]
