"""The fused graph's memory layout (engine/layout.py): `auto` takes the layout that measured faster, every layout
gives the same answers, and evaluate, predict and the API say which one they ran."""

from __future__ import annotations

import json
import re
import time

import pytest
import torch

import facegraph
from facegraph.cli import LAYOUT_NAMES, main
from facegraph.engine.layout import LAYOUT_CHOICES, time_layouts, use_layout
from facegraph.engine.trained import load_trained
from facegraph.errors import FacegraphError
from facegraph.graphs import middle_gated_schedule
from facegraph.models import GatedResNet, build_model, num_blocks

from test_api import tiny_run, write_photo  # noqa: F401  (tiny_run: a module-scoped fixture, a tiny trained run)


def _slowed_infer(monkeypatch: pytest.MonkeyPatch, slow_layout: str, seconds: float) -> None:
    """GatedResNet.infer, `seconds` slower when the model is laid out as `slow_layout`."""
    original = GatedResNet.infer

    def infer(self, images, **options):
        is_channels_last = self.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
        if is_channels_last == (slow_layout == "channels_last"):
            time.sleep(seconds)
        return original(self, images, **options)
    monkeypatch.setattr(GatedResNet, "infer", infer)


@pytest.mark.parametrize("slow_layout, fast_layout", [("nchw", "channels_last"), ("channels_last", "nchw")])
def test_time_layouts_takes_the_layout_that_ran_faster(monkeypatch, slow_layout, fast_layout):
    torch.manual_seed(0)
    model = build_model("resnet20", 5, width=0.25, target_rates=middle_gated_schedule(num_blocks("resnet20"), 0.5, 1, 1))
    _slowed_infer(monkeypatch, slow_layout, 0.03)
    timing = time_layouts(model.eval(), 32, 2, repeats=3)
    assert set(timing.seconds) == {"channels_last", "nchw"} and timing.batch_size == 2 and timing.repeats == 3
    assert timing.fastest == fast_layout
    assert timing.seconds[slow_layout] >= timing.seconds[fast_layout] + 0.025
    assert timing.describe().startswith(f"{fast_layout} (")


def test_every_layout_answers_the_same(tiny_run, tmp_path):
    photos = [write_photo(tmp_path / f"{i}.jpg", rgb, i) for i, rgb in enumerate([(200, 40, 40), (40, 40, 200)])]
    model = facegraph.load(tiny_run)
    assert model.layout == "channels_last"
    reference = model.embed(photos)
    assert model.use_layout("nchw") == "nchw" and model.layout == "nchw"
    assert model.trained.inference_model.stem[0].weight.is_contiguous()
    nchw = model.embed(photos)
    assert torch.equal(nchw.gate_values, reference.gate_values)
    torch.testing.assert_close(nchw.embeddings, reference.embeddings, rtol=1e-4, atol=1e-5)
    assert model.use_layout("auto", batch_size=2) in ("channels_last", "nchw")
    assert torch.equal(model.embed(photos).gate_values, reference.gate_values)
    with pytest.raises(FacegraphError, match="unknown layout 'nhwc'; layouts are channels_last, nchw, auto"):
        model.use_layout("nhwc")


def test_evaluate_and_predict_record_their_layout(tiny_run, tmp_path, capsys):
    summaries = {}
    for layout in ("channels_last", "nchw", "auto"):
        assert main(["evaluate", str(tiny_run), "--layout", layout, "--json", "--no-timing"]) == 0
        summaries[layout] = json.loads(capsys.readouterr().out)
        assert (tiny_run / "eval" / "test.json").is_file()
    assert summaries["channels_last"]["layout"] == "channels_last" and summaries["nchw"]["layout"] == "nchw"
    assert summaries["auto"]["layout"] in ("channels_last", "nchw")
    timed = summaries["auto"]["layout_seconds_per_batch"]
    batch = load_trained(tiny_run).config.train.eval_batch_size
    assert timed["batch_size"] == batch and timed["channels_last"] > 0 and timed["nchw"] > 0
    assert "layout_seconds_per_batch" not in summaries["nchw"]
    for key in ("top1", "top5", "gate_rates", "gmacs"):
        assert summaries["nchw"][key] == pytest.approx(summaries["channels_last"][key])
        assert summaries["auto"][key] == pytest.approx(summaries["channels_last"][key])

    assert main(["evaluate", str(tiny_run), "--layout", "auto", "--no-timing"]) == 0
    assert re.search(r"layout timed on a batch of \d+: channels_last [\d.]+ ms, nchw [\d.]+ ms",
                     capsys.readouterr().out)

    photo = write_photo(tmp_path / "face.jpg", (40, 200, 40), 5)
    assert main(["predict", str(tiny_run), str(photo), "--json", "--layout", "auto", "--batch-size", "1"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["layout"] in ("channels_last", "nchw")
    assert f"facegraph predict: layout {document['layout']} (" in captured.err and "per batch of 1" in captured.err


def test_use_layout_keeps_the_run_and_the_cli_offers_every_layout(tiny_run):
    assert LAYOUT_NAMES == LAYOUT_CHOICES
    trained = load_trained(tiny_run)
    same, timing = use_layout(trained, "channels_last", batch_size=4)
    assert same is trained and timing is None
    nchw, timing = use_layout(trained, "nchw", batch_size=4)
    assert timing is None and nchw.layout == "nchw" and nchw.model is trained.model and trained.layout == "channels_last"
