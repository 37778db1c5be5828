"""Configuration, training, resuming, distributed training, evaluation and Table II on a tiny real LFW subset."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import comparable_metrics, metrics_rows
import torch

from facegraph.cli import main
from facegraph.config import load_config
from facegraph.engine.annealing import linear_anneal, lr_factor, target_rates_at
from facegraph.engine.metrics import checkpoint_rank, mean_open_rate
from facegraph.paper import target_rates
from facegraph.rundir import load_checkpoint
from facegraph.workflows import TABLE2_ROWS
from facegraph.errors import ConfigError
from facegraph.models import stage_first_blocks

REPO = Path(__file__).resolve().parents[1]
# Small and fast: 32 px, a handful of identities, two epochs.
TINY = ["model.image_size=32", "train.epochs=2", "train.min_steps=0", "train.batch_size=16", "train.eval_batch_size=64",
        "train.precision='fp32'", "train.channels_last=false", "train.threads=1"]


def train_cli(config: str, data: Path, out: Path, *extra: str) -> int:
    args = ["train", "--config", config, "--data", str(data), "--out", str(out)]
    for assignment in [*TINY, *extra]:
        args += ["--set", assignment]
    return main(args)


# --- configuration -------------------------------------------------------------------------------------------------

def test_every_preset_loads():
    for preset, names in TABLE2_ROWS.items():
        for name in names:
            config = load_config(f"{preset}/{name}")
            assert config.name == name
    paper = load_config("paper/iig-gender-age")
    assert paper.model.arch == "resnet101" and paper.train.batch_size == 150
    assert [f.name for f in paper.loss.iig_features] == ["gender", "age"]
    assert paper.loss.target_weight == 0.0 and paper.optim.weight_decay == 1e-4 and paper.optim.momentum == 0.9


def test_every_preset_written_as_toml_loads_back_the_same(tmp_path):
    from facegraph.config import config_to_toml, list_presets

    for name in list_presets():
        config = load_config(name, ["train.select_rate_slack=0.02", "optim.step_milestones=[3, 6]"])
        written = tmp_path / f"{name.replace('/', '-')}.toml"
        written.write_text(config_to_toml(config.to_dict()))
        assert load_config(written).to_dict() == config.to_dict(), name
    assert "# final_temperature: not set" in config_to_toml(load_config("cpu/aig-t0.5").to_dict())


def test_a_file_of_ones_own_inherits_a_shipped_preset(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('inherit = "cpu/aig-t0.5"\nname = "mine"\n[train]\nepochs = 5\n')
    expected = load_config("cpu/aig-t0.5", ["name=mine", "train.epochs=5"])
    assert load_config(mine).to_dict() == expected.to_dict()
    (tmp_path / "local.toml").write_text('inherit = "mine"\n[optim]\nlr = 0.05\n')  # a file of its folder first
    assert load_config(tmp_path / "local.toml").optim.lr == 0.05
    assert load_config(tmp_path / "local.toml").train.epochs == 5
    mine.write_text('inherit = "cpu/no-such"\n')
    with pytest.raises(ConfigError, match=r"mine.toml: inherit = 'cpu/no-such' is neither a file of its folder"):
        load_config(mine)


def test_a_path_spelled_another_way_is_no_config_difference(tmp_path, monkeypatch):
    from facegraph.config import config_differences

    monkeypatch.chdir(tmp_path)
    relative = load_config("cpu/aig-t0.5", ["model.init_from=runs/dense"]).to_dict()
    absolute = load_config("cpu/aig-t0.5", [f"model.init_from={str(tmp_path / 'runs' / 'dense')!r}"]).to_dict()
    assert config_differences(relative, absolute) == []
    other = load_config("cpu/aig-t0.5", ["model.init_from=runs/other", "train.epochs=5"]).to_dict()
    assert [key for key, _, _ in config_differences(relative, other)] == [("model", "init_from"), ("train", "epochs")]


def test_unknown_keys_and_wrong_types_are_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\narch = "resnet50"\nwidht = 0.5\n')
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key widht in \[model\]"):
        load_config(bad)
    with pytest.raises(ConfigError, match="train.epochs: expected int, got str 'ten'"):
        load_config(None, ["train.epochs=ten"])
    with pytest.raises(ConfigError, match="model.variant must be one of"):
        load_config(None, ["model.variant=gated"])
    with pytest.raises(ConfigError, match="iig_features"):
        load_config(None, ["model.variant=iig"])
    with pytest.raises(TypeError, match=r"write \['train.epochs=3'\]"):
        load_config("cpu/aig-t0.5", "train.epochs=3")


def test_overrides_are_typed():
    config = load_config("cpu/aig-t0.5",
                         ["train.epochs=3", "model.arch=resnet18", "optim.lr=1", "optim.step_milestones=[2, 4]"])
    assert config.train.epochs == 3 and config.model.arch == "resnet18"
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.optim.step_milestones == [2, 4]


def test_downsampling_blocks_can_stay_on():
    paper = target_rates(load_config("paper/aig-t0.4"))
    assert [i for i, t in enumerate(paper) if t < 1] == list(range(7, 30))  # the paper gates block 7 (strided)
    cpu = target_rates(load_config("cpu/aig-t0.5"))
    assert [i for i, t in enumerate(cpu) if t < 1] == [4, 5, 6, 8, 9, 10, 11, 12, 14]
    assert stage_first_blocks("resnet50") == [0, 3, 7, 13]


def test_schedules():
    factors = [lr_factor(step, 10, 5, "cosine", warmup_epochs=1) for step in range(50)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] < 0.01
    assert lr_factor(45, 10, 5, "step", milestones=[2, 4], gamma=0.1) == pytest.approx(0.01)
    assert lr_factor(25, 10, 5, "step", milestones=[2, 4], gamma=0.1) == pytest.approx(0.1)
    assert lr_factor(15, 10, 5, "step", milestones=[2, 4], gamma=0.1) == 1.0
    assert linear_anneal(0, 5, 2.0, 0.5) == 2.0 and linear_anneal(4, 5, 2.0, 0.5) == 0.5
    final = torch.tensor([0.4, 0.5])
    assert torch.allclose(target_rates_at(0, 4, final), torch.tensor([0.85, 0.875]))
    assert torch.equal(target_rates_at(3, 4, final), final) and torch.equal(target_rates_at(9, 4, final), final)
    assert torch.equal(target_rates_at(0, 0, final), final)


# --- training ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def iig_run(tiny_lfw, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "iig"
    assert train_cli("cpu/iig-gender", tiny_lfw, run) == 0
    return run


def test_a_run_directory_holds_everything(iig_run, tiny_lfw):
    for name in ("config.json", "environment.json", "dataset.json", "metrics.jsonl", "done.json",
                 "checkpoints/last.pt", "checkpoints/best.pt", "eval/test.json", "eval/test-images.csv"):
        assert (iig_run / name).exists(), name
    config = json.loads((iig_run / "config.json").read_text())
    assert config["model"]["image_size"] == 32 and config["train"]["epochs"] == 2
    rows = metrics_rows(iig_run)
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert set(row["train"]) >= {"loss", "cross_entropy", "target", "iig", "top1", "top5", "gate_rates",
                                     "images_per_s", "data_wait_fraction"}
        assert len(row["train"]["gate_rates"]) == 9 and len(row["val"]["gate_rates"]) == 9
        assert row["train"]["iig"] > 0 and row["train"]["target"] == 0.0  # the IIG loss replaces the target loss
        assert 0 < row["val"]["gmacs_mean"]
    dataset = json.loads((iig_run / "dataset.json").read_text())
    assert len(dataset["identities"]) == 6 and "gender" in dataset["features"]


def test_evaluate_reports_cost_and_readout(iig_run, capsys):
    assert main(["evaluate", str(iig_run), "--split", "test", "--json", "--no-timing"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = (iig_run / "eval" / "test-images.csv").read_text().splitlines()
    assert summary["images"] == len(lines) - 1 == 36
    gmacs = summary["gmacs"]
    assert 0 < gmacs["mean"] <= gmacs["dense"] and gmacs["std"] >= 0
    assert summary["gflops"]["mean"] == pytest.approx(2 * gmacs["mean"])
    gender = summary["readout"]["gender"]
    assert gender["method"].startswith("iig-masks")
    assert sum(map(sum, gender["confusion"])) == gender["images"] > 0
    assert "skin_color" in summary["readout"]  # other features: prototypes from the training split
    assert summary["readout"]["skin_color"]["method"].startswith("train-prototypes")
    header = lines[0].split(",")
    first = dict(zip(header, lines[1].split(",")))
    assert len(first["gates"]) == 9 and int(first["active_gates"]) == first["gates"].count("1")
    assert first["readout_gender"] in ("male", "female")
    # accuracy is the confusion matrix's trace over its images, rows are true labels: both rebuilt from the CSV
    with (iig_run / "eval" / "test-images.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    for feature, report in summary["readout"].items():
        labels = report["labels"]
        rebuilt = [[0] * len(labels) for _ in labels]
        for record in records:
            if record[feature] in labels:  # a known true label
                rebuilt[labels.index(record[feature])][labels.index(record["readout_" + feature])] += 1
        assert report["confusion"] == rebuilt, feature
        trace = sum(rebuilt[i][i] for i in range(len(labels)))
        assert report["images"] == sum(map(sum, rebuilt))
        assert report["accuracy"] == pytest.approx(trace / report["images"]), feature
    transposed = [[list(column) for column in zip(*r["confusion"])] for r in summary["readout"].values()]
    assert transposed != [r["confusion"] for r in summary["readout"].values()]  # so a transposed matrix would show
    assert main(["evaluate", str(iig_run), "--no-timing"]) == 0
    assert "read-out gender" in capsys.readouterr().out


def test_an_existing_run_is_not_overwritten(iig_run, tiny_lfw, capsys):
    assert train_cli("cpu/iig-gender", tiny_lfw, iig_run) == 2
    assert "--resume" in capsys.readouterr().err


def test_a_diverging_loss_stops_the_run(tiny_lfw, tmp_path, capsys):
    assert train_cli("cpu/aig-t0.5", tiny_lfw, tmp_path / "nan", "optim.lr=1e30") == 2
    message = capsys.readouterr().err
    assert "the loss became" in message and "epoch 1, step" in message


def test_best_checkpoint_waits_for_select_from_and_noise_anneals(tiny_lfw, tmp_path):
    run = tmp_path / "late"
    assert train_cli("cpu/aig-t0.5", tiny_lfw, run, "train.epochs=4", "train.select_from=0.5",
                     "gumbel.final_noise=0.0") == 0
    rows = metrics_rows(run)
    assert [row["gumbel_noise"] for row in rows] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    done = json.loads((run / "done.json").read_text())
    late_val = {row["epoch"]: row["val"]["top1"] for row in rows if row["epoch"] > 2}
    assert done["best_epoch"] in late_val and done["best_val_top1"] == max(late_val.values())


def test_checkpoint_rank_puts_epochs_within_the_rate_budget_first():
    assert checkpoint_rank(40.0, 0.52, 0.52) > checkpoint_rank(60.0, 0.53, 0.52)  # within beats over, whatever top-1
    assert checkpoint_rank(41.0, 0.40, 0.52) > checkpoint_rank(40.0, 0.50, 0.52)  # within: the higher top-1
    assert checkpoint_rank(10.0, 0.55, 0.52) > checkpoint_rank(60.0, 0.60, 0.52)  # over: the lower open rate
    assert checkpoint_rank(41.0, 0.90, None) > checkpoint_rank(40.0, 0.10, None)  # no budget: top-1 alone


def test_best_checkpoint_keeps_to_the_rate_budget(tiny_lfw, tmp_path):
    run = tmp_path / "budget"
    assert train_cli("cpu/aig-t0.5", tiny_lfw, run, "train.epochs=4", "train.select_rate_slack=0.0") == 0
    rows = metrics_rows(run)
    open_rates = {row["epoch"]: mean_open_rate(row["val"]) for row in rows}
    assert max(open_rates.values()) > 0.5  # the gates start at 0.85: some epoch is over the budget
    ranks = {row["epoch"]: checkpoint_rank(row["val"]["top1"], open_rates[row["epoch"]], 0.5) for row in rows}
    done = json.loads((run / "done.json").read_text())
    assert ranks[done["best_epoch"]] == max(ranks.values())
    assert done["max_val_open_rate"] == 0.5
    assert done["best_val_open_rate"] == pytest.approx(open_rates[done["best_epoch"]])
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == done["best_epoch"]


def test_a_killed_run_resumes_to_the_same_result(tiny_lfw, tmp_path):
    common = [*TINY, "train.epochs=5", "train.select_rate_slack=0.0"]  # resuming must restore the best epoch's rate too
    uninterrupted = tmp_path / "uninterrupted"
    assert train_cli("cpu/aig-t0.5", tiny_lfw, uninterrupted, *common) == 0

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "facegraph", "train", "--config", "cpu/aig-t0.5",
               "--data", str(tiny_lfw), "--out", str(killed)]
    for assignment in common:
        command += ["--set", assignment]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # the first epoch is logged: the kill lands in the second
    process.wait()
    finished = len(metrics_rows(killed))
    assert 1 <= finished < 5, "the run was meant to be killed mid-training"
    assert main(["train", "--config", "cpu/aig-t0.5", "--data", str(tiny_lfw),
                 "--out", str(killed), "--resume", *sum((["--set", a] for a in common), [])]) == 0
    assert comparable_metrics(metrics_rows(killed)) == comparable_metrics(metrics_rows(uninterrupted))
    first = json.loads((uninterrupted / "eval" / "test.json").read_text())
    second = json.loads((killed / "eval" / "test.json").read_text())
    assert first["top1"] == second["top1"] and first["gate_rates"] == second["gate_rates"]
    assert json.loads((killed / "done.json").read_text()) == json.loads((uninterrupted / "done.json").read_text())


def test_torchrun_trains_with_two_processes(tiny_lfw, tmp_path):
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "facegraph", "train", "--config", "cpu/aig-t0.5", "--data",
               str(tiny_lfw), "--out", str(run)]
    for assignment in [*TINY, "train.epochs=1"]:
        command += ["--set", assignment]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = metrics_rows(run)
    assert json.loads((run / "environment.json").read_text())["world_size"] == 2
    assert len(row["train"]["gate_rates"]) == 9
    assert (run / "done.json").exists() and (run / "eval" / "test.json").exists()


def test_table2_trains_tabulates_and_reuses(tiny_lfw, tmp_path, capsys):
    out = tmp_path / "table2"
    args = ["table2", "--preset", "cpu", "--data", str(tiny_lfw), "--out", str(out), "--models",
            "resnet50,aig-t0.5", "--from-scratch", *sum((["--set", a] for a in [*TINY, "train.epochs=1"]), [])]
    assert main(args) == 0
    table = (out / "table2.md").read_text()
    assert "ConvNet-AIG [t=0.5]" in table and "ResNet-50 (width 0.25)" in table
    # One seed: the paired row has no interval, only the per-seed McNemar test on the same test images.
    paired = next(line for line in table.splitlines() if line.startswith("| ConvNet-AIG") and "McNemar" not in line
                  and "n/a (1 seed)" in line)
    assert "needs >= 2 seeds" in paired and "(1 seed)" in paired
    rows = (out / "table2.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("preset,model,seeds,top1")
    checkpoint = out / "aig-t0.5-seed0" / "checkpoints" / "best.pt"
    stamp = checkpoint.stat().st_mtime_ns
    assert main(args) == 0  # finished runs are reused, not retrained
    assert checkpoint.stat().st_mtime_ns == stamp
    capsys.readouterr()


def test_every_gate_trains_under_some_loss():
    """The paper's gender + age masks cover 22 of its 23 gates: the 23rd keeps the target loss (issue 9, point 8)."""
    from facegraph import paper as paper_run
    from facegraph.models import num_blocks

    config = load_config("paper/iig-gender-age")
    gates = len(paper_run.gated_blocks(config))
    masks = paper_run.iig_masks(config, gates, {"gender": ["male", "female"], "age": ["<35", "35-45", "45-55", ">55"]})
    weights = paper_run.loss_weights(config, masks, gates)
    covered = {gate for m in masks for gate in m.feature_gates}
    assert gates == 23 and num_blocks("resnet101") == 33 and len(covered) == 22
    assert weights.target_gates == [22] and weights.target_weight == 1.0 and weights.iig_weight == 1.0
    alternating = load_config("paper/iig-gender")  # every gate has a mask: no target loss at all
    masks = paper_run.iig_masks(alternating, gates, {"gender": ["male", "female"]})
    assert paper_run.loss_weights(alternating, masks, gates).target_weight == 0.0


def test_table2_folds_test_each_photo_once(tiny_lfw, tmp_path, capsys):
    """--folds 2: seed s trains and tests on fold s; the evaluations, the per-image records and the pooled McNemar
    cover every photo of the dataset exactly once per model."""
    from facegraph.data import load_prepared
    from facegraph.rundir import RunDir

    out = tmp_path / "cv"
    common = ["table2", "--preset", "cpu", "--data", str(tiny_lfw), "--folds", "2", "--from-scratch",
              *sum((["--set", a] for a in [*TINY, "train.epochs=1"]), [])]
    args = [*common, "--out", str(out), "--models", "resnet50,aig-t0.5"]
    assert main(args) == 0
    dataset = load_prepared(tiny_lfw)
    for model in ("resnet50", "aig-t0.5"):
        tested = []
        for seed in (0, 1):
            run = RunDir(out / f"{model}-seed{seed}")
            assert run.config().data.fold == seed and run.config().train.seed == seed
            tested += run.image_records("test", {}).sample.tolist()
        assert sorted(tested) == list(range(len(dataset.samples)))
    assert RunDir(str(out / "resnet50-seed0")).config() == RunDir(out / "resnet50-seed0").config()  # str or Path
    table = (out / "table2.md").read_text()
    assert "cross-validation fold s of 2" in table
    assert f"over {len(dataset.samples)} test images (95 % interval over images" in table
    assert main([*args, "--seeds", "3"]) == 2
    assert "--folds 2 runs one seed per fold" in capsys.readouterr().err

    # --fold-seed: the same cross-validation on another partition of the same photos.
    other = tmp_path / "cv-b"
    assert main([*common, "--out", str(other), "--models", "resnet50", "--fold-seed", "1"]) == 0
    first_test, second_test = (RunDir(folder / "resnet50-seed0").image_records("test", {}).sample.tolist()
                               for folder in (out, other))
    assert RunDir(other / "resnet50-seed1").config().data.fold_seed == 1 and sorted(first_test) != sorted(second_test)
    assert sorted(second_test + RunDir(other / "resnet50-seed1").image_records("test", {}).sample.tolist()) == \
        list(range(len(dataset.samples)))
    assert "cross-validation fold s of 2 (fold seed 1)" in (other / "table2.md").read_text()
    assert main(["table2", "--preset", "cpu", "--data", str(tiny_lfw), "--out", str(tmp_path / "cv-c"),
                 "--fold-seed", "1"]) == 2
    assert "give the number of folds too" in capsys.readouterr().err and not (tmp_path / "cv-c").exists()


# --- on synthetic data (no real faces needed) -----------------------------------------------------------------------

def synthetic_args(*extra: str) -> list[str]:
    from conftest import TINY_RUN

    return sum((["--set", a] for a in [*TINY_RUN, "train.epochs=1", *extra]), [])


def test_table2_evaluates_again_a_finished_run_that_lost_its_test_evaluation(data_synthetic_32px, tmp_path, capsys):
    out = tmp_path / "table2"
    args = ["table2", "--preset", "cpu", "--data", str(data_synthetic_32px), "--out", str(out), "--models",
            "resnet50", "--from-scratch", *synthetic_args()]
    assert main(args) == 0
    evaluation = out / "resnet50-seed0" / "eval" / "test.json"
    first = json.loads(evaluation.read_text())
    checkpoint = out / "resnet50-seed0" / "checkpoints" / "best.pt"
    stamp = checkpoint.stat().st_mtime_ns
    evaluation.unlink()
    assert main(args) == 0, capsys.readouterr().err
    assert json.loads(evaluation.read_text())["top1"] == first["top1"]
    assert checkpoint.stat().st_mtime_ns == stamp  # evaluated, not retrained


def test_folds_that_would_test_on_no_photo_are_refused_before_training(data_synthetic_32px, tmp_path, capsys):
    out = tmp_path / "cv"  # 40 photos cannot fill 50 folds: folds 40-49 would be empty
    assert main(["table2", "--preset", "cpu", "--data", str(data_synthetic_32px), "--out", str(out), "--folds", "50",
                 "--models", "resnet50", "--from-scratch", *synthetic_args()]) == 2
    error = capsys.readouterr().err
    assert f"--folds 50: fold 40 of {data_synthetic_32px} would hold no test image (40 photos)" in error
    assert not list(out.glob("*-seed0"))
    run = tmp_path / "fold45"
    assert main(["train", "--config", "cpu/resnet50", "--data", str(data_synthetic_32px), "--out", str(run),
                 *synthetic_args("data.folds=50", "data.fold=45")]) == 2
    assert "data.folds = 50: fold 45 of" in capsys.readouterr().err and not run.exists()


def test_every_command_names_a_traced_export_as_such(tmp_path, capsys):
    """A torchscript export holds config.json and dataset.json but no checkpoint: not 'has not finished training'."""
    from facegraph.engine.trained import load_trained
    from facegraph.errors import FacegraphError

    export = tmp_path / "ts"
    export.mkdir()
    (export / "config.json").write_text(json.dumps(load_config("cpu/resnet50").to_dict()))
    (export / "dataset.json").write_text(json.dumps({"image_size": 32, "identities": ["a", "b"], "features": {}}))
    (export / "export.json").write_text(json.dumps({"format": "torchscript", "model": "model.pt"}))
    with pytest.raises(FacegraphError, match="is a torchscript export: load it with torch.jit.load"):
        load_trained(export)
    assert main(["evaluate", str(export)]) == 2
    error = capsys.readouterr().err
    assert "is a torchscript export" in error and "has not finished" not in error and "best.pt" not in error
    (export / "export.json").write_text(json.dumps({"model": "model.pt"}))  # no format: say what is wrong with it
    with pytest.raises(FacegraphError, match=r"does not describe a state-dict export \(format: None\)"):
        load_trained(export)
