"""`facegraph embed` / `verify` / `predict --gallery` option handling, and the report's verification analysis on a
hand-written pairs.csv (no model needed)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from facegraph.analysis.page import PageFigure, PageTable
from facegraph.analysis.verification import (
    OUTCOMES, accuracy_by_active_gates, attribute_agreement, read_verified_pairs, verification_section,
)
from facegraph.cli import build_parser, main


@pytest.mark.parametrize("command", ["embed", "verify", "predict"])
def test_every_option_has_help(command):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in subparsers.choices[command]._actions:
        assert action.help, f"{command} {action.dest} has no help"


def test_verify_option_errors(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "no-run"), "--pairs", "pairs.txt"]) == 2
    assert "--pairs needs --images" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "no-run"), "--pairs-from", "data", "--images", "x"]) == 2
    assert "--images goes with --pairs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["verify", str(tmp_path), "--pairs", "a", "--pairs-from", "b"])
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "no-run"), "--pairs-from", "data"]) == 2
    assert "no-run" in capsys.readouterr().err


def write_verification(folder: Path) -> None:
    """Eight pairs: fold, same, similarity, correct, active gates and a read-out gender per image."""
    folder.mkdir(parents=True)
    rows = [  # same, correct, gates first/second, gender first/second
        (1, 1, 3, 3, "male", "male"), (1, 1, 2, 3, "female", "female"), (1, 0, 1, 1, "male", "female"),
        (1, 0, 1, 2, "female", "male"), (0, 1, 3, 2, "male", "female"), (0, 1, 2, 2, "female", "male"),
        (0, 0, 1, 1, "male", "male"), (0, 1, 3, 3, "male", "female"),
    ]
    header = ["fold", "first", "second", "person_first", "person_second", "same", "training_identity", "similarity",
              "threshold", "correct", "gmacs_first", "gmacs_second", "active_gates_first", "active_gates_second",
              "gates_first", "gates_second", "gender_first", "gender_second"]
    with (folder / "pairs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, (same, correct, a, b, ga, gb) in enumerate(rows):
            accepted = same if correct else 1 - same
            writer.writerow([index % 2, f"a{index}.jpg", f"b{index}.jpg", "P", "Q", same, 0,
                             0.9 - 0.1 * index if accepted else 0.1 * index - 0.5, 0.0, correct, 0.01, 0.01, a, b,
                             "1" * a + "0" * (3 - a), "1" * b + "0" * (3 - b), ga, gb])
    summary = {"pairs_used": 8, "pairs_total": 9, "pairs_skipped_missing": 1, "mean_gmacs_per_image": 0.01,
               "training_identity_pairs": 2,
               "results": {"plain": {"accuracy_mean": 0.75, "accuracy_std": 0.1, "auc": 0.8, "folds": [0, 1],
                                     "tar_at_far": [{"far": 0.01, "tar": 0.5, "false_accepts": 0, "mismatched_pairs": 4}]}}}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_verification_analysis(tmp_path):
    write_verification(tmp_path / "run" / "verify" / "lfw")
    pairs = read_verified_pairs(tmp_path / "run" / "verify" / "lfw")
    assert list(pairs.attributes) == ["gender"] and len(pairs.same) == 8
    by_gates = {count: (n, accuracy) for count, n, accuracy in accuracy_by_active_gates(pairs)}
    assert by_gates[2] == (2, 0.0) and by_gates[6] == (2, 1.0) and by_gates[5] == (2, 1.0)
    agreement = attribute_agreement(pairs)["gender"]
    outcome = dict(zip(OUTCOMES, agreement))
    assert outcome["false accept"] == (1, 1.0)  # the wrongly accepted mismatched pair reads out one gender
    assert outcome["false reject"] == (2, 0.0)
    assert outcome["true accept"] == (2, 1.0) and outcome["true reject"] == (3, 0.0)

    saved = []

    def save(figure: Figure, name: str, alt: str, caption: str) -> PageFigure:
        saved.append(name)
        return PageFigure(f"{name}.png", alt, caption, 1, 1)

    sections = verification_section(tmp_path / "run", save, "run", "ResNet")
    assert [s.heading for s in sections] == ["Verification: lfw"]
    assert saved == ["run-verify-lfw-roc", "run-verify-lfw-gates"]
    assert any(isinstance(item, PageTable) for item in sections[0].items)
    assert verification_section(tmp_path / "elsewhere", save, "x", "x") == []
