"""End to end on real faces: prepare a few LFW identities, train a tiny ConvNet-IIG for one epoch, then report on it
and ask it about photos."""

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from facegraph.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEGRAPH_DATA", REPO.parent / "shared" / "data"))
LFW = DATA / "lfw"


@pytest.mark.skipif(not (LFW / "lfw-deepfunneled").is_dir(), reason=f"LFW not found at {LFW} (set FACEGRAPH_DATA)")
def test_train_then_report_and_predict(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "runs" / "iig"
    assert main(["prepare", "folder", str(LFW / "lfw-deepfunneled"), "--min-images", "10", "--max-identities", "8",
                 "--per-identity", "10", "--image-size", "32", "--center-crop", "0.45", "--split", "60/20/20",
                 "--attributes-lfw", str(LFW), "--out", str(data), "--no-progress"]) == 0
    assert main(["train", "--config", "cpu/iig-gender", "--data", str(data), "--out", str(run),
                 "--set", "train.epochs=1", "--set", "train.min_steps=0", "--set", "model.image_size=32", "--set", "model.arch=resnet20",
                 "--set", "train.batch_size=16", "--set", "train.precision=fp32", "--set", "train.channels_last=false",
                 "--set", "optim.warmup_epochs=0"]) == 0
    capsys.readouterr()

    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert "index.html" in capsys.readouterr().out
    page = (tmp_path / "report" / "index.html").read_text()
    figures = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert {"iig-fig1-curves.png", "iig-heatmap-gender.png", "iig-fig5-easy-hard.png", "iig-fig5-active-gates.png"} <= set(figures)
    for name in figures:
        assert f'src="{name}"' in page
        with Image.open(tmp_path / "report" / name) as image:
            image.verify()
    summary = json.loads((run / "eval" / "test.json").read_text())
    assert f"{100 * summary['top1']:.2f}" in page
    assert "Red outlines" in page  # the IIG masks of gender are drawn on its heatmap

    photos = sorted((LFW / "lfw-deepfunneled").glob("*/*.jpg"))[:3]  # full 250 x 250 photos, cut as prepared
    unreadable = tmp_path / "broken.jpg"
    unreadable.write_text("not a photo")
    assert main(["predict", str(run), *map(str, photos), str(unreadable), "--json"]) == 2
    captured = capsys.readouterr()
    predictions = json.loads(captured.out)["predictions"]
    assert str(unreadable) in captured.err and predictions[-1]["image"] == str(unreadable)
    identities = json.loads((run / "dataset.json").read_text())["identities"]
    for prediction, photo in zip(predictions, photos):
        assert prediction["image"] == str(photo)
        assert len(prediction["top5"]) == 5 and all(p["identity"] in identities for p in prediction["top5"])
        assert [p["probability"] for p in prediction["top5"]] == sorted((p["probability"] for p in prediction["top5"]), reverse=True)
        assert len(prediction["gates"]) == len(summary["gated_blocks"])
        attributes = {estimate["feature"]: estimate for estimate in prediction["attributes"]}
        gender = attributes["gender"]
        assert gender["method"] == "iig-masks"
        assert gender["distance"] == min(gender["distances"].values())
        others = [estimate for feature, estimate in attributes.items() if feature != "gender"]
        assert others and all(e["method"] == "train-prototypes" for e in others)  # prototypes stored by evaluate
        assert all(e["distance"] == min(e["distances"].values()) for e in others)
        assert 0 < prediction["gmacs"] <= prediction["dense_gmacs"]
    assert main(["predict", str(run), str(photos[0])]) == 0
    text = capsys.readouterr().out
    assert "top-5:" in text and "gender:" in text and "GMACs:" in text
