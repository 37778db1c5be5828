"""Crash-safe resume (issue 9): a kill at every write point of an epoch, and between the last epoch and the test
evaluation, resumes to exactly the result of an uninterrupted run: the same metrics.jsonl (minus wall-clock fields),
the same best checkpoint and the same eval/test.json. Also under torchrun (2 gloo processes): every rank's RNG is
saved and restored.

Each kill runs `facegraph train` in a subprocess whose rundir functions are wrapped to `os._exit(9)` right after
(or before) the write named by the case, then the run is resumed through the CLI in this process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import comparable_metrics, metrics_rows
import torch

from facegraph.cli import main
from facegraph.rundir import BEST, LAST, PENDING_SUFFIX, RunDir

REPO = Path(__file__).resolve().parents[1]
CONFIG = "cpu/aig-t0.5"
EPOCHS = 3
# 32 px, a CIFAR-style ResNet-20 with the cpu/aig-t0.5 gates: a 3-epoch run takes a few seconds.
TINY = ["model.image_size=32", "model.arch=resnet20", f"train.epochs={EPOCHS}", "train.min_steps=0", "train.batch_size=16",
        "train.eval_batch_size=64", "train.precision='fp32'", "train.channels_last=false", "train.threads=1"]
KILLED = 9

# Runs `facegraph train` with one write point wrapped to kill the process: argv = point, epoch, train args...
KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    import facegraph.engine.train as train_module
    import facegraph.rundir as rundir
    from facegraph.cli import main

    point, epoch, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    saved = {"epoch": None}
    original_save, original_replace = rundir.save_checkpoint, os.replace

    def save_checkpoint(path, state):
        saved["epoch"] = state.get("epoch")
        if point == "torn-last" and path.name == "last.pt" and state["epoch"] == epoch:
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            torch.save(state, tmp)  # killed mid-write: half a temporary file, last.pt untouched
            with open(tmp, "r+b") as handle:
                handle.truncate(tmp.stat().st_size // 2)
            os._exit(9)
        original_save(path, state)
        if state.get("epoch") == epoch and (point == "pending" and path.name.endswith(".pending")
                                            or point == "last" and path.name == "last.pt"):
            os._exit(9)

    def replace(src, dst, *args, **kwargs):
        original_replace(src, dst, *args, **kwargs)
        if point == "best" and str(src).endswith(".pending") and saved["epoch"] == epoch:
            os._exit(9)

    original_append = rundir.RunDir._append_metrics

    def append_metrics(self, row):
        original_append(self, row)
        if point == "metrics" and row["epoch"] == epoch:
            os._exit(9)

    original_evaluate, original_done = train_module.evaluate_run, rundir.RunDir.write_done

    def evaluate_run(*args, **kwargs):
        if point == "evaluate":
            os._exit(9)
        return original_evaluate(*args, **kwargs)

    def write_done(self, summary):
        if point == "done":
            os._exit(9)
        original_done(self, summary)

    rundir.save_checkpoint = save_checkpoint
    os.replace = replace
    rundir.RunDir._append_metrics = append_metrics
    train_module.evaluate_run = evaluate_run
    rundir.RunDir.write_done = write_done
    sys.exit(main(argv))
""")


def train_args(data: Path, out: Path, *extra: str, overrides: list[str] = TINY) -> list[str]:
    args = ["train", "--config", CONFIG, "--data", str(data), "--out", str(out), *extra]
    for assignment in overrides:
        args += ["--set", assignment]
    return args


def checkpoint(run: Path, name: str) -> dict:
    return torch.load(RunDir(run).checkpoint_path(name), map_location="cpu", weights_only=True)


def assert_same_run(run: Path, reference: Path) -> None:
    assert comparable_metrics(metrics_rows(run)) == comparable_metrics(metrics_rows(reference))
    for name in (BEST, LAST):
        ours, theirs = checkpoint(run, name), checkpoint(reference, name)
        assert ours["epoch"] == theirs["epoch"], name
        assert ours["model"].keys() == theirs["model"].keys()
        for key, tensor in theirs["model"].items():
            assert torch.equal(ours["model"][key], tensor), f"{name}.pt: {key}"
    first = json.loads((reference / "eval" / "test.json").read_text())
    second = json.loads((run / "eval" / "test.json").read_text())
    assert second["checkpoint"] == "best"
    assert first["top1"] == second["top1"] and first["gate_rates"] == second["gate_rates"]
    assert json.loads((run / "done.json").read_text()) == json.loads((reference / "done.json").read_text())
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(PENDING_SUFFIX)
                 or ".tmp" in p.name]
    assert leftovers == []


@pytest.fixture(scope="module")
def uninterrupted(tiny_lfw, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "uninterrupted"
    assert main(train_args(tiny_lfw, run)) == 0
    return run


def improved_epoch(reference: Path) -> int:
    """The last epoch after the first that improved the val top-1 (it writes best.pt.pending), else 1."""
    best, improved = None, 1
    for row in metrics_rows(reference):
        if best is None or row["val"]["top1"] > best:
            best = row["val"]["top1"]
            improved = row["epoch"]
    return improved


# (point, which epoch): "improved" kills in an epoch that writes a new best, a number in that epoch.
KILL_POINTS = [
    ("pending", "improved"),  # (a) best.pt.pending written, last.pt still the previous epoch's
    ("torn-last", "improved"),  # half of last.pt's temporary file written
    ("last", "improved"),  # (b) last.pt replaced (the commit point), best.pt not yet renamed
    ("last", EPOCHS),  # (b) in the last epoch (which does not improve on this data if `improved` < EPOCHS)
    ("best", "improved"),  # (c) pending best renamed over best.pt, metrics row not yet appended
    ("metrics", "improved"),  # (d) metrics row appended
    ("metrics", EPOCHS),  # (d) every epoch committed, no test evaluation yet
    ("evaluate", 0),  # (e) between the last epoch and the test evaluation
    ("done", 0),  # (e) eval/test.json written, done.json not
]


@pytest.mark.parametrize(("point", "epoch"), KILL_POINTS, ids=[f"{p}-{e}" for p, e in KILL_POINTS])
def test_a_kill_at_every_write_point_resumes_to_the_same_result(point, epoch, tiny_lfw, uninterrupted, tmp_path):
    epoch = improved_epoch(uninterrupted) if epoch == "improved" else epoch
    run = tmp_path / "killed"
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT, point, str(epoch), *train_args(tiny_lfw, run)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == KILLED, f"the kill at {point} (epoch {epoch}) did not happen:\n{result.stderr[-3000:]}"
    assert not (run / "done.json").exists()
    assert main(train_args(tiny_lfw, run, "--resume")) == 0
    assert_same_run(run, uninterrupted)


def test_a_finished_run_resumed_again_changes_nothing(tiny_lfw, uninterrupted, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(uninterrupted, run)
    assert main(train_args(tiny_lfw, run, "--resume")) == 0
    assert_same_run(run, uninterrupted)


def test_a_resume_may_lengthen_the_run(tiny_lfw, uninterrupted, tmp_path):
    """train.epochs may grow on --resume: the first epochs are kept, the rest are trained, done.json is rewritten."""
    import shutil

    run = tmp_path / "longer"
    shutil.copytree(uninterrupted, run)
    longer = [*TINY, f"train.epochs={EPOCHS + 1}"]
    assert main(train_args(tiny_lfw, run, "--resume", overrides=longer)) == 0
    rows = metrics_rows(run)
    assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 2))
    assert comparable_metrics(rows[:EPOCHS]) == comparable_metrics(metrics_rows(uninterrupted))
    assert json.loads((run / "done.json").read_text())["epochs"] == EPOCHS + 1
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == EPOCHS + 1
    # What started the run stays recorded; the resume is added to it.
    started = json.loads((uninterrupted / "environment.json").read_text())
    recorded = json.loads((run / "environment.json").read_text())
    assert {key: recorded[key] for key in started} == started
    assert len(recorded["resumed"]) == 1 and recorded["resumed"][0]["started"] >= started["started"]


# --- torchrun ------------------------------------------------------------------------------------------------------

def torchrun(script: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *script]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_a_killed_two_process_run_resumes_to_the_same_result(tiny_lfw, tmp_path, capsys):
    """SLOW: three torchrun launches, 40-55 s on 2 busy cores (the rest of this module: about 45 s).

    Rank 0 is killed after its first committed epoch; the resumed 2-process run matches an uninterrupted one, which
    needs each rank's own generators back (a run that restored rank 0's on both ranks differs from epoch 2 on).
    The per-rank states fix the world size: a single process then refuses to resume the run."""
    ddp = [*TINY, "train.epochs=2"]
    reference = tmp_path / "ddp"
    result = torchrun(["-m", "facegraph", *train_args(tiny_lfw, reference, overrides=ddp)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run written to") == 1  # one report for the user, not one per rank

    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    killed = tmp_path / "ddp-killed"
    result = torchrun([str(script), "metrics", "1", *train_args(tiny_lfw, killed, overrides=ddp)])
    assert result.returncode != 0
    assert [row["epoch"] for row in metrics_rows(killed)] == [1]
    assert len(checkpoint(killed, LAST)["rng"]) == 2  # one state per rank
    assert not torch.equal(checkpoint(killed, LAST)["rng"][0]["torch"], checkpoint(killed, LAST)["rng"][1]["torch"])

    result = torchrun(["-m", "facegraph", *train_args(tiny_lfw, killed, "--resume", overrides=ddp)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(killed, reference)

    capsys.readouterr()
    assert main(train_args(tiny_lfw, killed, "--resume", overrides=[*TINY, "train.epochs=3"])) == 2
    err = capsys.readouterr().err
    assert "2 process(es)" in err and "Traceback" not in err


# --- on synthetic data (no real faces needed) -----------------------------------------------------------------------

def synthetic_train(data: Path, out: Path, *extra: str) -> list[str]:
    from conftest import TINY_RUN

    return train_args(data, out, *extra, overrides=[*TINY_RUN, "train.epochs=1"])


def test_a_resume_refuses_the_dataset_prepared_again_with_other_pixels(data_synthetic_folder, tmp_path, capsys):
    """Re-preparing with another crop keeps manifest.csv and identities.csv; prepare.json tells the pixels apart.
    A run directory written before that check (no preparation_fingerprint) still resumes."""
    import shutil

    from facegraph.data import Selection, prepare_folder
    from facegraph.rundir import dataset_fingerprint

    data = tmp_path / "data"
    selection = Selection(image_size=32, min_images=10, split={"train": 0.6, "val": 0.2, "test": 0.2})
    prepare_folder(data_synthetic_folder, data, selection)
    run, legacy = tmp_path / "run", tmp_path / "legacy"
    assert main(synthetic_train(data, run)) == 0
    shutil.copytree(run, legacy)
    stored = json.loads((legacy / "dataset.json").read_text())
    stored.pop("preparation_fingerprint", None)
    (legacy / "dataset.json").write_text(json.dumps(stored))
    fingerprint = dataset_fingerprint(data)
    prepare_folder(data_synthetic_folder, data, selection, center_crop=0.8, overwrite=True)
    assert dataset_fingerprint(data) == fingerprint  # the same photos, people and splits
    capsys.readouterr()
    assert main(synthetic_train(data, run, "--resume")) == 2
    error = capsys.readouterr().err
    assert f"--resume: {data.resolve()} was prepared again since {run} started" in error and "Traceback" not in error
    assert main(["evaluate", str(run)]) == 2  # evaluating would preprocess test photos unlike the training ones
    error = capsys.readouterr().err
    assert f"{data.resolve()} was prepared again since {run} was trained" in error and "Traceback" not in error
    assert main(synthetic_train(data, legacy, "--resume")) == 0


def test_the_preparation_fingerprint_follows_the_pixels_only():
    from facegraph.rundir import preparation_fingerprint

    def fingerprint(**changes) -> str:
        info = {"image_size": 64, "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
                "parameters": {"center_crop": 1.0, "lfw_variant": "deepfunneled", "workers": 4, "http": {"timeout": 30},
                               "images_root": "/a"}}
        for key, value in changes.items():
            (info["parameters"] if key in info["parameters"] else info)[key] = value
        return preparation_fingerprint(info)  # prepare.json as load_prepared reads it

    same = fingerprint()
    # How fast or from where it was prepared: the same pixels.
    assert fingerprint(workers=1) == fingerprint(http={"timeout": 5}) == fingerprint(images_root="/b") == same
    # Another cut, size, LFW variant or normalisation: other pixels.
    assert len({same, fingerprint(center_crop=0.8), fingerprint(image_size=32), fingerprint(lfw_variant="funneled"),
                fingerprint(normalization={"mean": [0.4] * 3, "std": [0.25] * 3})}) == 5


def test_a_kill_between_the_start_files_leaves_no_started_run(data_synthetic_32px, tmp_path, monkeypatch, capsys):
    """config.json is written last: a kill before it leaves a folder a fresh training takes over."""
    import facegraph.rundir as rundir

    class Killed(Exception):
        pass

    written = []
    original = rundir.write_json

    def write_json(path, data):
        if written:
            raise Killed
        written.append(path.name)
        original(path, data)

    monkeypatch.setattr(rundir, "write_json", write_json)
    run = tmp_path / "run"
    with pytest.raises(Killed):
        main(synthetic_train(data_synthetic_32px, run))
    monkeypatch.undo()
    assert written and "config.json" not in written
    assert main(synthetic_train(data_synthetic_32px, run, "--resume")) == 2
    assert "holds no run (no config.json)" in capsys.readouterr().err
    assert main(synthetic_train(data_synthetic_32px, run)) == 0


def test_a_resume_from_a_checkpoint_without_training_state_names_it(data_synthetic_32px, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    assert main(synthetic_train(data_synthetic_32px, run)) == 0
    last = RunDir(run).checkpoint_path(LAST)
    shutil.copyfile(RunDir(run).checkpoint_path(BEST), last)
    capsys.readouterr()
    assert main(synthetic_train(data_synthetic_32px, run, "--resume")) == 2
    error = capsys.readouterr().err
    assert f"checkpoint {last} holds no training state (no optimizer, scheduler, rng, best_val_top1, best_epoch)" \
        in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert "resumed" not in json.loads((run / "environment.json").read_text())  # a refused resume resumed nothing
