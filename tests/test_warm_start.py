"""Warm start (model.init_from, as ConvNet-AIG's --pretrained), a step budget and a held-out validation part for small datasets."""

from pathlib import Path

import pytest
from conftest import TINY_RUN
import torch

from facegraph import paper
from facegraph.cli import main
from facegraph.config import list_presets, load_config
from facegraph.data import Selection, load_prepared, prepare_folder
from facegraph.data.prepared import holdout
from facegraph.engine.annealing import training_epochs
from facegraph.engine.evaluate import evaluate_run
from facegraph.engine.warm_start import warm_start
from facegraph.errors import FacegraphError
from facegraph.rundir import RunDir, load_checkpoint

TINY = TINY_RUN


def train(config: str, data: Path, out: Path, *extra: str) -> Path:
    args = ["train", "--config", config, "--data", str(data), "--out", str(out)]
    for assignment in [*TINY, *extra]:
        args += ["--set", assignment]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def dense_run(data_synthetic_32px, tmp_path_factory) -> Path:
    return train("cpu/resnet50", data_synthetic_32px, tmp_path_factory.mktemp("runs") / "dense", "train.epochs=1")


def test_training_epochs_reach_the_step_budget():
    assert training_epochs(18, 0, 54) == 18
    assert training_epochs(18, 1000, 54) == 19  # 18 x 54 = 972 < 1000
    assert training_epochs(18, 1000, 5) == 200  # 40 people x 10 photos: 5 steps per epoch


def test_a_small_dataset_trains_to_its_step_budget(data_synthetic_32px, tmp_path):
    # 24 training images, batch 8: 3 steps per epoch, so 10 steps take 4 epochs although 1 was asked for.
    run = train("cpu/resnet50", data_synthetic_32px, tmp_path / "budget", "train.epochs=1", "train.min_steps=10")
    assert [row["epoch"] for row in RunDir(run).metrics()] == [1, 2, 3, 4]


def test_warm_start_loads_backbone_and_classifier_but_not_gates(dense_run, data_synthetic_32px):
    config = load_config("cpu/aig-t0.5", TINY)
    source = load_checkpoint(RunDir(dense_run).checkpoint_path("best"))["model"]
    identities = RunDir(dense_run).dataset()["identities"]
    torch.manual_seed(1)
    model = paper.model_from_config(config, len(identities))
    gates_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("gates.")}
    loaded = warm_start(model, dense_run, identities)
    state = model.state_dict()
    assert "fc.weight" in loaded and not any(name.startswith("gates.") for name in loaded)
    assert all(torch.equal(state[name], source[name]) for name in loaded)
    assert all(torch.equal(state[name], before) for name, before in gates_before.items())
    # Other identities: the classifier stays fresh, the backbone still loads.
    fresh = paper.model_from_config(config, len(identities))
    fc_before = fresh.state_dict()["fc.weight"].clone()
    loaded = warm_start(fresh, dense_run, list(reversed(identities)))
    assert "fc.weight" not in loaded and torch.equal(fresh.state_dict()["fc.weight"], fc_before)


def test_warm_start_names_every_tensor_that_does_not_fit(dense_run):
    wider = paper.model_from_config(load_config("cpu/aig-t0.5", [*TINY, "model.width=1.0"]), 4)
    with pytest.raises(FacegraphError, match=r"init_from .*: its weights do not fit this model: .*stem.0.weight"):
        warm_start(wider, dense_run, ["x"] * 4)


def test_train_init_from_fine_tunes_a_gated_model(dense_run, data_synthetic_32px, tmp_path, capsys, monkeypatch):
    run = tmp_path / "aig-warm"
    monkeypatch.chdir(dense_run.parent)  # --init-from given relative: the run records it absolute
    args = ["train", "--config", "cpu/aig-t0.5", "--data", str(data_synthetic_32px), "--out", str(run),
            "--init-from", dense_run.name, "--set", "train.epochs=1", "--set", "optim.gate_lr_factor=10"]
    for assignment in TINY:
        args += ["--set", assignment]
    assert main(args) == 0
    assert RunDir(run).config().model.init_from == str(dense_run)
    assert RunDir(run).is_done


def test_train_init_from_starts_the_backbone_from_the_dense_run(dense_run, data_synthetic_32px, tmp_path):
    # at a negligible learning rate the warm-started weights barely move: the trained backbone is the dense run's
    run = train("cpu/aig-t0.5", data_synthetic_32px, tmp_path / "aig-still", "train.epochs=1", "optim.lr=1e-9",
                "optim.warmup_epochs=0", f"model.init_from='{dense_run}'")
    source = load_checkpoint(RunDir(dense_run).checkpoint_path("best"))["model"]
    trained = load_checkpoint(RunDir(run).checkpoint_path("last"))["model"]
    weights = [name for name in source if name in trained and not name.startswith("gates.")
               and not name.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert "stem.0.weight" in weights and "fc.weight" in weights
    for name in weights:
        assert torch.allclose(trained[name], source[name], rtol=0, atol=1e-6), name


def test_without_a_val_split_the_checkpoint_is_chosen_on_training_images_held_out(data_synthetic_folder, tmp_path):
    data = tmp_path / "no-val"
    prepare_folder(data_synthetic_folder, data, Selection(image_size=32, min_images=10,
                                                          split={"train": 0.8, "test": 0.2}))
    dataset = load_prepared(data)
    kept, held = holdout(dataset, "train", 0.25, seed=0)
    assert set(kept).isdisjoint(held) and sorted(kept + held) == dataset.split_indices("train")
    assert {dataset.samples[i].identity for i in held} == {s.identity for s in dataset.samples}  # every person
    assert holdout(dataset, "train", 0.25, seed=0) == (kept, held)
    run = train("cpu/resnet50", data, tmp_path / "run", "train.epochs=1", "data.val_from_train=0.25")
    (row,) = RunDir(run).metrics()
    assert "val" in row and RunDir(run).dataset()["val_from_train"] == len(held)
    # evaluate sees the same parts: --split val is the held-out part, and train no longer holds it
    assert evaluate_run(run, "val", timing=False)["images"] == len(held)
    assert evaluate_run(run, "train", timing=False)["images"] == len(kept)


def test_table2_warm_start_fine_tunes_every_row_from_the_resnet_of_its_seed(data_synthetic_32px, tmp_path, capsys,
                                                                             monkeypatch):
    out = tmp_path / "table"
    args = ["table2", "--preset", "cpu", "--data", str(data_synthetic_32px), "--out", str(out), "--models",
            "resnet50,aig-t0.5", "--set", "train.epochs=1", "--finetune-set", "train.select_from=0"]
    for assignment in TINY:
        args += ["--set", assignment]
    assert main(args) == 0  # the cpu preset warm-starts by default
    base = out / "resnet50-seed0"
    assert RunDir(base).config().model.init_from == "" and RunDir(base).config().optim.lr == 0.1
    for name in ("resnet50-ft-seed0", "aig-t0.5-ft-seed0"):
        config = RunDir(out / name).config()
        assert config.model.init_from == str(base) and config.optim.lr == 0.01 and config.train.epochs == 1
        assert config.loss.distill_weight == 1.0 and config.gumbel.final_noise == 0.0
    aig = RunDir(out / "aig-t0.5-ft-seed0").config()
    assert aig.loss.target_weight == 8.0 and aig.model.variant == "aig" and aig.train.select_from == 0.0
    table = (out / "table2.md").read_text()
    assert "fine-tuned 1 epoch at lr 0.01" in table and "Paired against the ResNet" in table
    # `evaluate --checkpoint last` rewrites eval/test.json; the table goes on comparing best.pt, and a relative
    # spelling of --out (so of every fine-tuned run's init_from) still reuses the finished runs.
    assert main(["evaluate", str(out / "aig-t0.5-ft-seed0"), "--checkpoint", "last", "--no-timing"]) == 0
    assert RunDir(out / "aig-t0.5-ft-seed0").evaluation("test")["checkpoint"] == "last"
    monkeypatch.chdir(tmp_path)
    assert main([*args[:6], "table", *args[7:]]) == 0
    assert RunDir(out / "aig-t0.5-ft-seed0").evaluation("test")["checkpoint"] == "best"
    assert _rows((out / "table2.md").read_text()) == _rows(table)
    capsys.readouterr()
    assert main([*args[:8], "aig-t0.5", *args[9:]]) == 2  # nothing to fine-tune from
    assert "--from-scratch" in capsys.readouterr().err
    assert main([*args, "--from-scratch"]) == 2  # --finetune-set without fine-tuning
    assert "--finetune-set" in capsys.readouterr().err
    assert main([*args, "--finetune-set", "train.epoch=3"]) == 2  # a misspelt key is named with its own flag
    error = capsys.readouterr().err
    assert "--finetune-set train.epoch: unknown key 'epoch' in [train]" in error and "--set" not in error
    assert main([*args, "--finetune-set", "train.epochs"]) == 2
    assert "--finetune-set expects key=value, got 'train.epochs'" in capsys.readouterr().err
    fresh = tmp_path / "bad-crops"  # a bad crop is refused before anything trains
    assert main([*args[:6], str(fresh), *args[7:], "--verify-pairs", "pairs.txt", "--verify-images", str(tmp_path),
                 "--verify-center-crop", "0.45", "1.5"]) == 2
    assert "centre crops must be distinct and lie in [0.05, 1], got [0.45, 1.5]" in capsys.readouterr().err
    assert not list(fresh.glob("*-seed0"))


def test_a_warm_started_iig_row_keeps_its_own_losses():
    """finetune.toml sits between base.toml and the row: the row's own keys (IIG: no target loss) still win, and its
    [finetune] table applies only when it is fine-tuned."""
    iig = load_config("cpu/iig-gender", ["model.init_from='runs/resnet50'"], parent="finetune")
    assert iig.loss.target_weight == 0.0 and iig.loss.iig_weight == 8.0 and iig.loss.distill_weight == 0.0
    assert iig.optim.lr == 0.01 and iig.model.variant == "iig" and iig.train.epochs == 36
    aig = load_config("cpu/aig-t0.5", ["model.init_from='runs/resnet50'"], parent="finetune")
    assert aig.gates.always_on_first == 1 and aig.loss.distill_weight == 1.0  # finetune.toml's 12 gated blocks ...
    assert iig.gates.always_on_first == 3 and iig.gates.always_on_last == 1  # ... which the IIG row's [finetune] undoes
    scratch = load_config("cpu/iig-gender")
    assert scratch.optim.lr == 0.1 and scratch.loss.iig_weight == 1.0 and "finetune" not in scratch.to_dict()
    assert scratch.train.epochs == 72
    assert "cpu/finetune" not in list_presets() and "paper/finetune" not in list_presets()


def _distance_to_teacher(student: Path, teacher: Path, data: Path) -> float:
    """Mean KL divergence of the student's softmax from the teacher's over the training images (T = 1)."""
    from facegraph.data import make_loader
    from facegraph.engine.trained import load_trained
    from facegraph.graphs.losses import distillation_loss

    dataset = load_prepared(data)
    student_model, teacher_model = load_trained(student).model, load_trained(teacher).model
    total, count = 0.0, 0
    for batch in make_loader(dataset, "train", 64, train=False, seed=0):
        with torch.no_grad():
            loss = distillation_loss(student_model.infer(batch.images).logits,
                                     teacher_model.infer(batch.images).logits, 1.0)
        total, count = total + loss.item() * len(batch.indices), count + len(batch.indices)
    return total / count


def test_distillation_pulls_the_gated_model_toward_its_dense_teacher(dense_run, data_synthetic_32px, tmp_path):
    runs = {}
    for weight in (0, 1):
        runs[weight] = train("cpu/aig-t0.5", data_synthetic_32px, tmp_path / f"distill{weight}", "train.epochs=2",
                             f"model.init_from={str(dense_run)!r}", f"loss.distill_weight={weight}",
                             "loss.distill_temperature=2.0", "optim.lr=0.01")
    rows = RunDir(runs[1]).metrics()
    assert all(row["train"]["distill"] > 0 for row in rows)
    assert all(row["train"]["distill"] == 0 for row in RunDir(runs[0]).metrics())
    assert _distance_to_teacher(runs[1], dense_run, data_synthetic_32px) < \
        _distance_to_teacher(runs[0], dense_run, data_synthetic_32px)


def test_distillation_needs_a_teacher_run_of_the_same_identities(dense_run, data_synthetic_32px, tiny_lfw, tmp_path,
                                                                 capsys):
    base = ["train", "--config", "cpu/aig-t0.5", "--out", str(tmp_path / "run"), "--set", "loss.distill_weight=1"]
    tiny = sum((["--set", a] for a in TINY), [])
    assert main([*base, "--data", str(data_synthetic_32px), *tiny]) == 2
    assert "distils from the run in model.init_from" in capsys.readouterr().err
    checkpoint = dense_run / "checkpoints" / "best.pt"
    assert main([*base, "--data", str(data_synthetic_32px), "--init-from", str(checkpoint), *tiny]) == 2
    assert "needs model.init_from to be a run directory" in capsys.readouterr().err
    assert main([*base, "--data", str(tiny_lfw), "--init-from", str(dense_run), "--out", str(tmp_path / "lfw"),
                 *tiny]) == 2
    assert "trained on other identities" in capsys.readouterr().err
    assert not (tmp_path / "lfw").exists()  # refused before anything was written


class Killed(Exception):
    """Stands for a kill: raised where the process would have died."""


def test_a_warm_start_killed_before_its_first_epoch_resumes_warm(dense_run, data_synthetic_32px, tmp_path,
                                                                  monkeypatch):
    """A resumed run without a committed epoch warm-starts as a fresh run would: the same result as uninterrupted."""
    from conftest import comparable_metrics, metrics_rows

    warm = ["train.epochs=2", f"model.init_from={str(dense_run)!r}"]
    reference = train("cpu/aig-t0.5", data_synthetic_32px, tmp_path / "reference", *warm)
    killed = tmp_path / "killed"

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(RunDir, "commit_epoch", die)  # the first epoch never commits
    with pytest.raises(Killed):
        train("cpu/aig-t0.5", data_synthetic_32px, killed, *warm)
    monkeypatch.undo()
    assert (killed / "config.json").is_file() and not RunDir(killed).checkpoint_path("last").exists()
    resume = ["train", "--config", "cpu/aig-t0.5", "--data", str(data_synthetic_32px), "--out", str(killed), "--resume"]
    assert main([*resume, *sum((["--set", a] for a in [*TINY, *warm]), [])]) == 0
    assert comparable_metrics(metrics_rows(killed)) == comparable_metrics(metrics_rows(reference))
    for name in ("best", "last"):
        ours = load_checkpoint(RunDir(killed).checkpoint_path(name))["model"]
        theirs = load_checkpoint(RunDir(reference).checkpoint_path(name))["model"]
        assert all(torch.equal(ours[key], tensor) for key, tensor in theirs.items()), name


def test_a_checkpoint_file_keeps_the_classifier_only_when_its_run_had_the_same_identities(dense_run, tmp_path,
                                                                                          caplog):
    config = load_config("cpu/aig-t0.5", TINY)
    identities = RunDir(dense_run).dataset()["identities"]
    checkpoint = RunDir(dense_run).checkpoint_path("best")
    fresh = paper.model_from_config(config, len(identities))
    assert "fc.weight" in warm_start(fresh, checkpoint, identities)  # inside its run: treated as the run
    fresh = paper.model_from_config(config, len(identities))
    assert "fc.weight" not in warm_start(fresh, checkpoint, list(reversed(identities)))
    bare = tmp_path / "weights.pt"  # no run around it: which person class i is, is unknown
    bare.write_bytes(checkpoint.read_bytes())
    fresh = paper.model_from_config(config, len(identities))
    fc_before = fresh.state_dict()["fc.weight"].clone()
    with caplog.at_level("INFO", logger="facegraph.engine.warm_start"):
        loaded = warm_start(fresh, bare, identities)
    assert "fc.weight" not in loaded and "stem.0.weight" in loaded
    assert torch.equal(fresh.state_dict()["fc.weight"], fc_before)
    assert "identities are unknown, so the classifier starts fresh" in caplog.text


def _rows(table: str) -> list[str]:
    """The table's model rows without the measured skipping speedup, which is timed anew by each evaluation."""
    return [" | ".join(cell for i, cell in enumerate(line.split(" | ")) if i != 6)
            for line in table.splitlines() if line.startswith("| ResNet") or line.startswith("| ConvNet")]
