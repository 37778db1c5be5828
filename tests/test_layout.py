"""The fused graph's memory layout (engine/layout.py): `auto` takes the layout that measured faster, every layout
gives the same answers, and evaluate, predict, embed and the API run and record the layout they were given."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch

from conftest import write_photo

import facegraph
from facegraph.cli import LAYOUT_NAMES, main
from facegraph.engine.layout import LAYOUT_CHOICES, time_layouts, use_layout
from facegraph.engine.trained import load_trained
from facegraph.errors import FacegraphError
from facegraph.graphs import middle_gated_schedule
from facegraph.models import GatedResNet, build_model, num_blocks


def _layout_of(graph: GatedResNet) -> str:
    return "channels_last" if graph.stem[0].weight.is_contiguous(memory_format=torch.channels_last) else "nchw"


class CostClock:
    """A clock that only moves when a network runs: 2 s per pass in `slow_layout`, 1 s in the other."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, slow_layout: str) -> None:
        self.now = 0.0
        self.passes: list[str] = []
        original = GatedResNet.infer

        def infer(graph, images, **options):
            self.passes.append(_layout_of(graph))
            self.now += 2.0 if self.passes[-1] == slow_layout else 1.0
            return original(graph, images, **options)
        monkeypatch.setattr(GatedResNet, "infer", infer)

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("slow_layout, fast_layout", [("nchw", "channels_last"), ("channels_last", "nchw")])
def test_time_layouts_takes_the_layout_that_ran_faster(monkeypatch, slow_layout, fast_layout):
    torch.manual_seed(0)
    model = build_model("resnet20", 5, width=0.25, target_rates=middle_gated_schedule(num_blocks("resnet20"), 0.5, 1, 1))
    clock = CostClock(monkeypatch, slow_layout)
    timing = time_layouts(model.eval(), 32, 2, repeats=3, clock=clock)
    # One warm-up pass each, then three timed passes each, alternating; only the timed ones count.
    assert clock.passes == ["channels_last", "nchw"] * 4
    assert timing.seconds == {slow_layout: 2.0, fast_layout: 1.0} and timing.fastest == fast_layout
    assert timing.batch_size == 2 and timing.repeats == 3 and _layout_of(timing.fastest_graph) == fast_layout
    assert timing.describe() == (f"{fast_layout} (channels_last {1000 * timing.seconds['channels_last']:.2f} ms, nchw "
                                 f"{1000 * timing.seconds['nchw']:.2f} ms per batch of 2, medians of 3)")
    with pytest.raises(FacegraphError, match="batch_size >= 1 and repeats >= 1"):
        time_layouts(model, 32, 0)


def test_every_layout_answers_the_same(tiny_run, tmp_path):
    photos = [write_photo(tmp_path / f"{i}.jpg", rgb, i) for i, rgb in enumerate([(200, 40, 40), (40, 40, 200)])]
    model = facegraph.load(tiny_run)
    assert model.layout == "channels_last" and _layout_of(model.trained.inference_model) == "channels_last"
    reference = model.embed(photos)
    assert model.use_layout("nchw") == "nchw" and _layout_of(model.trained.inference_model) == "nchw"
    nchw = model.embed(photos)
    assert torch.equal(nchw.gate_values, reference.gate_values)
    torch.testing.assert_close(nchw.embeddings, reference.embeddings, rtol=1e-4, atol=1e-5)
    chosen = model.use_layout("auto", batch_size=2)
    assert chosen == model.layout and _layout_of(model.trained.inference_model) == chosen
    assert torch.equal(model.embed(photos).gate_values, reference.gate_values)
    with pytest.raises(FacegraphError, match="unknown layout 'nhwc'; layouts are channels_last, nchw, auto"):
        model.use_layout("nhwc")


def test_evaluate_runs_and_records_its_layout(tiny_run, capsys):
    summaries = {}
    for layout in ("channels_last", "nchw", "auto"):
        assert main(["evaluate", str(tiny_run), "--layout", layout, "--json", "--no-timing"]) == 0
        summaries[layout] = json.loads(capsys.readouterr().out)
        assert json.loads((tiny_run / "eval" / "test.json").read_text())["layout"] == summaries[layout]["layout"]
    assert summaries["channels_last"]["layout"] == "channels_last" and summaries["nchw"]["layout"] == "nchw"
    timed = summaries["auto"]["layout_seconds_per_batch"]
    test_images = summaries["auto"]["images"]
    batch = min(load_trained(tiny_run).config.train.eval_batch_size, test_images)
    assert timed["batch_size"] == batch and timed["channels_last"] > 0 and timed["nchw"] > 0
    assert summaries["auto"]["layout"] == min(("channels_last", "nchw"), key=timed.__getitem__)
    assert "layout_seconds_per_batch" not in summaries["nchw"]
    for key in ("top1", "top5", "gate_rates", "gmacs"):
        assert summaries["nchw"][key] == pytest.approx(summaries["channels_last"][key])
        assert summaries["auto"][key] == pytest.approx(summaries["channels_last"][key])
    assert main(["evaluate", str(tiny_run), "--layout", "auto", "--no-timing"]) == 0
    assert re.search(rf"layout timed on a batch of {batch}: channels_last [\d.]+ ms, nchw [\d.]+ ms",
                     capsys.readouterr().out)


def test_predict_and_embed_take_a_layout(tiny_run, tmp_path, capsys, caplog):
    photo = write_photo(tmp_path / "face.jpg", (40, 200, 40), 5)
    documents = {}
    for layout in ("channels_last", "nchw"):
        assert main(["predict", str(tiny_run), str(photo), "--json", "--layout", layout]) == 0
        documents[layout] = json.loads(capsys.readouterr().out)
        assert documents[layout]["layout"] == layout
    first, second = (documents[layout]["predictions"][0] for layout in ("channels_last", "nchw"))
    assert first["gates"] == second["gates"] and first["top5"][0]["identity"] == second["top5"][0]["identity"]
    with caplog.at_level(logging.INFO, logger="facegraph.engine.layout"):
        assert main(["predict", str(tiny_run), str(photo), "--json", "--layout", "auto"]) == 0
    chosen = json.loads(capsys.readouterr().out)["layout"]
    # Timed on the one photo there is, not on --batch-size's 32.
    assert re.search(rf"layout {chosen} \(channels_last [\d.]+ ms, nchw [\d.]+ ms per batch of 1,", caplog.text)

    arrays = {}
    for layout in ("channels_last", "nchw"):
        out = tmp_path / f"{layout}.npz"
        assert main(["embed", str(tiny_run), str(photo), str(tmp_path / "0.jpg"), "--out", str(out),
                     "--layout", layout]) == 2  # 0.jpg does not exist: named and skipped, the other embedded
        arrays[layout] = np.load(out)
    np.testing.assert_array_equal(arrays["nchw"]["gates"], arrays["channels_last"]["gates"])
    np.testing.assert_allclose(arrays["nchw"]["embeddings"], arrays["channels_last"]["embeddings"], rtol=1e-4,
                               atol=1e-5)


def test_use_layout_keeps_the_run_and_the_cli_offers_every_layout(tiny_run):
    assert LAYOUT_NAMES == LAYOUT_CHOICES
    trained = load_trained(tiny_run)
    same, timing = use_layout(trained, "channels_last", batch_size=4)
    assert same is trained and timing is None
    nchw, timing = use_layout(trained, "nchw", batch_size=4)
    assert timing is None and nchw.layout == "nchw" and nchw.model is trained.model and trained.layout == "channels_last"
    assert _layout_of(nchw.inference_model) == "nchw" and _layout_of(trained.inference_model) == "channels_last"


def test_auto_runs_the_graph_it_timed_without_fusing_again(tiny_run, monkeypatch):
    trained = load_trained(tiny_run)
    fused = []
    original = GatedResNet.fuse_for_inference

    def fuse(model, memory_format=None):
        fused.append(memory_format)
        return original(model, memory_format)
    monkeypatch.setattr(GatedResNet, "fuse_for_inference", fuse)
    chosen, timing = use_layout(trained, "auto", batch_size=2, repeats=1)
    assert chosen.layout == timing.fastest and chosen.inference_model is timing.fastest_graph
    assert len(fused) == 2  # once per layout timed, not a third time for the winner
    with pytest.raises(FacegraphError, match="unknown layout 'nhwc'"):
        trained.with_layout("nhwc")
    with pytest.raises(FacegraphError, match="not the model fused in that layout"):
        trained.with_layout("nchw", trained.model)  # not fused
    with pytest.raises(FacegraphError, match="not the model fused in that layout"):
        trained.with_layout("nchw", trained.model.fuse_for_inference(torch.channels_last))
