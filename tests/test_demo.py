"""The main job, end to end at one epoch per model: LFW prepared, three models trained, evaluated and reported."""

import json

from facegraph.cli import main


def test_demo_writes_everything_into_one_folder(data_root, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--data", str(data_root), "--set", "train.epochs=1",
                 "--set", "train.min_steps=0"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "report") in printed and str(out / "table2.md") in printed
    prepare = json.loads((out / "data" / "lfw10-64px" / "prepare.json").read_text())
    assert prepare["counts"]["identities"] == 158 and prepare["counts"]["images"] == 4324
    table = (out / "table2.md").read_text()
    for row in ("ResNet-50 (width 0.25)", "ConvNet-AIG [t=0.5]", "ConvNet-IIG (Gender)"):
        assert row in table
    for name in ("resnet50", "aig-t0.5", "iig-gender"):
        run = out / "runs" / name
        assert (run / "done.json").exists() and (run / "eval" / "test.json").exists()
    page = (out / "report" / "index.html").read_text()
    assert "ConvNet-IIG" in page and page.count("<img") >= 6
    # a second demo reuses the prepared data and the finished runs
    stamp = (out / "runs" / "aig-t0.5" / "checkpoints" / "best.pt").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--data", str(data_root), "--set", "train.epochs=1",
                 "--set", "train.min_steps=0", "--no-report"]) == 0
    assert (out / "runs" / "aig-t0.5" / "checkpoints" / "best.pt").stat().st_mtime_ns == stamp
