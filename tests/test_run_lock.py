"""Two trainings of one run directory: the second fails at once with the first one's pid instead of interleaving its
writes, and the lock goes with the process that held it (a killed training leaves the run resumable)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import TINY_RUN, metrics_rows

from facegraph.cli import main
from facegraph.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]

# `facegraph train` that stops for good after committing its first epoch, as a long epoch would.
PAUSED_TRAINING = textwrap.dedent("""
    import sys, time
    import facegraph.rundir as rundir
    from facegraph.cli import main

    original = rundir.RunDir._append_metrics

    def append_metrics(self, row):
        original(self, row)
        time.sleep(600)

    rundir.RunDir._append_metrics = append_metrics
    sys.exit(main(sys.argv[1:]))
""")


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    sets = sum((["--set", a] for a in [*TINY_RUN, "train.epochs=2"]), [])
    return ["train", "--config", "cpu/aig-t0.5", "--data", str(data), "--out", str(out), *sets, *extra]


def test_a_second_training_of_a_run_in_training_fails_at_once(data_synthetic_32px, tmp_path, capsys):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", PAUSED_TRAINING, *train_args(data_synthetic_32px, run)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        metrics = run / "metrics.jsonl"
        deadline = time.time() + 180
        while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
            assert process.poll() is None, "the first training stopped early"
            time.sleep(0.05)
        assert len(metrics_rows(run)) == 1, "the first training did not commit its first epoch in time"
        assert main(train_args(data_synthetic_32px, run, "--resume")) == 2
        error = capsys.readouterr().err
        assert f"{run} is being trained by another process (pid {process.pid})" in error
        assert len(error.strip().splitlines()) == 1 and len(metrics_rows(run)) == 1
    finally:
        process.kill()
        process.wait()
    # The kernel released the dead process's lock: the run resumes and finishes.
    assert main(train_args(data_synthetic_32px, run, "--resume")) == 0
    assert [row["epoch"] for row in metrics_rows(run)] == [1, 2] and (run / "done.json").is_file()


def torchrun_train(data: Path, run: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "facegraph", *train_args(data, run, *extra)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=REPO)
    return result, time.monotonic() - started


def test_torchrun_stops_every_rank_when_rank_zero_refuses_the_run(data_synthetic_32px, tmp_path):
    """Under torchrun only rank 0 checks and locks the run directory: when it refuses (another training holds the
    run; the run exists and --resume was not given), the whole launch must stop at once with rank 0's one-line
    error, not leave rank 1 to fail later in a collective, and write nothing."""
    run = tmp_path / "run"
    with RunDir(run).training_lock():
        result, took = torchrun_train(data_synthetic_32px, run)
    assert result.returncode != 0, result.stdout[-2000:]
    assert result.stderr.count(f"{run} is being trained by another process (pid {os.getpid()})") == 1, \
        result.stderr[-3000:]
    assert "[rank1]" not in result.stderr, result.stderr[-3000:]  # rank 1 stopped with rank 0, no traceback of its own
    assert took < 120, f"the launch took {took:.0f} s to give up"
    assert sorted(path.name for path in run.iterdir()) == ["train.lock"]

    finished = tmp_path / "finished"
    assert main(train_args(data_synthetic_32px, finished)) == 0
    written = {path: path.stat().st_mtime_ns for path in finished.rglob("*")}
    result, took = torchrun_train(data_synthetic_32px, finished)  # no --resume
    assert result.returncode != 0 and "already" in result.stderr, result.stderr[-3000:]
    assert "[rank1]" not in result.stderr, result.stderr[-3000:]
    assert took < 120, f"the launch took {took:.0f} s to give up"
    assert {path: path.stat().st_mtime_ns for path in finished.rglob("*")} == written
