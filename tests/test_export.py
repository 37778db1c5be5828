"""`facegraph export`: each format loads back and gives the run's logits; the shared folder is small and weights-only."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch

import facegraph
from facegraph.cli import main
from facegraph.errors import FacegraphError
from facegraph.rundir import RunDir

HAS_ONNX = importlib.util.find_spec("onnx") is not None


def reference(run: Path, photos: list[Path]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    model = facegraph.load(run)
    batch = model.batch(photos)
    logits, gates = model.infer(batch)
    return batch, logits, gates


def test_state_dict_export_is_weights_only_and_loads_as_a_run(tiny_run, photos, tmp_path, capsys):
    out = tmp_path / "shared"
    assert main(["export", str(tiny_run), "--out", str(out)]) == 0
    assert "state-dict" in capsys.readouterr().out
    weights = out / "checkpoints" / "best.pt"
    state = torch.load(weights, weights_only=True)
    assert set(state) == {"model"} and all(isinstance(v, torch.Tensor) for v in state["model"].values())
    assert weights.stat().st_size < 1.2 * (tiny_run / "checkpoints" / "best.pt").stat().st_size
    assert weights.stat().st_size < (tiny_run / "checkpoints" / "last.pt").stat().st_size  # no optimizer state
    dataset = json.loads((out / "dataset.json").read_text())
    assert set(dataset) == {"image_size", "center_crop", "mean", "std", "identities", "features"}  # no local paths
    assert json.loads((out / "config.json").read_text()) == json.loads((tiny_run / "config.json").read_text())
    description = json.loads((out / "export.json").read_text())
    assert description["format"] == "state-dict" and description["weights"] == "checkpoints/best.pt"

    batch, logits, gates = reference(tiny_run, photos)
    shared = facegraph.load(out)
    shared_logits, shared_gates = shared.infer(batch)
    assert torch.allclose(shared_logits, logits, atol=1e-6) and torch.equal(shared_gates, gates)
    assert [a["gender"].label for a in shared.read_attributes(photos)] == \
        [a["gender"].label for a in facegraph.load(tiny_run).read_attributes(photos)]
    assert main(["predict", str(out), str(photos[0]), "--json"]) == 0  # the folder is a minimal run directory
    prediction = json.loads(capsys.readouterr().out)["predictions"][0]
    assert {a["feature"] for a in prediction["attributes"]} == set(dataset["features"])  # prototypes travelled
    assert main(["evaluate", str(out)]) == 2  # the export keeps no local paths: which dataset is for the user to say
    error = capsys.readouterr().err
    assert "records no dataset location" in error and "pass --data" in error and "Traceback" not in error


def test_state_dict_export_carries_the_prototypes_the_run_reads(tiny_run, tmp_path):
    """eval/test.json's prototypes, else eval/val.json's (rundir.RunDir.stored_prototypes), not a mix of both."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    features = json.loads((run / "dataset.json").read_text())["features"]
    k = facegraph.load(run).model.num_gates
    # Numbers float32 cannot hold exactly: the export must write back the run's own; null is a label without images.
    stored = {"test": [[0.3] * k, [None] * k],
              "val": [[0.1] * k, [0.7] * k]}
    for split, rows in stored.items():
        (run / "eval" / f"{split}.json").write_text(json.dumps({"readout": {"gender": {"prototypes": rows}}}))
    facegraph.export(run, tmp_path / "shared")
    exported = json.loads((tmp_path / "shared" / "eval" / "test.json").read_text())
    assert exported == {"readout": {"gender": {"prototypes": stored["test"]}}}
    read_back = RunDir(tmp_path / "shared").stored_prototypes(features, k)["gender"]
    assert torch.equal(read_back, RunDir(run).stored_prototypes(features, k)["gender"])

    (run / "eval" / "test.json").unlink()  # without a test evaluation: the validation split's
    facegraph.export(run, tmp_path / "from-val")
    exported = json.loads((tmp_path / "from-val" / "eval" / "test.json").read_text())
    assert exported == {"readout": {"gender": {"prototypes": stored["val"]}}}

    (run / "eval" / "val.json").write_text(json.dumps({"readout": {"gender": {"prototypes": [[0.5] * (k + 1)] * 2}}}))
    facegraph.export(run, tmp_path / "misfit")  # rows that do not fit the model's gates are not carried
    assert not (tmp_path / "misfit" / "eval").exists()


def test_torchscript_export_runs_densely_and_says_so(tiny_run, photos, tmp_path, capsys):
    out = tmp_path / "ts"
    assert main(["export", str(tiny_run), "--out", str(out), "--format", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert "execution: dense" in printed and "masking" in printed
    assert "outputs: logits and gate values, not embeddings; computed in fp32, the run infers in fp32" in printed
    description = json.loads((out / "export.json").read_text())
    assert description["format"] == "torchscript" and description["execution"].startswith("dense")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.load(str(out / description["model"]))
    graph = str(traced.inlined_graph)
    assert "aten::_convolution" in graph and "batch_norm" not in graph  # the fused graph: BatchNorm folded away
    batch, logits, gates = reference(tiny_run, photos)
    traced_logits, traced_gates = traced(batch)
    assert torch.allclose(traced_logits, logits, atol=1e-5) and torch.equal(traced_gates, gates)
    single_logits, _ = traced(batch[:1])  # traced at batch 2, runs at any batch size
    assert torch.allclose(single_logits, logits[:1], atol=1e-5)
    with pytest.raises(FacegraphError, match="is a torchscript export: load it with torch.jit.load"):
        facegraph.load(out)


def test_traced_export_of_a_bf16_run_computes_in_fp32_and_says_so(tiny_run, photos, tmp_path, caplog):
    run = tmp_path / "bf16"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["train"]["precision"] = "bf16"  # the run infers in bf16, as a CPU run trained in bf16 does
    (run / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="facegraph.engine.export"):
        description = facegraph.export(run, tmp_path / "ts", format="torchscript")
    assert description == json.loads((tmp_path / "ts" / "export.json").read_text())
    assert description["precision"] == "fp32" and description["run_precision"] == "bf16"
    assert description["classifier"] == "linear" and description["logit_scale"] == 1.0
    assert set(description["outputs"]) == {"logits", "gate_values"}
    assert "not face embeddings" in description["outputs"]["logits"]
    assert "in fp32" in description["execution"]
    assert "infers in bf16, its torchscript export in fp32: the export agrees with the run's fp32 inference" \
        in caplog.text
    model = facegraph.load(run)
    assert model.precision == "bf16"
    batch = model.batch(photos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.load(str(tmp_path / "ts" / description["model"]))
    traced_logits, traced_gates = traced(batch)
    fp32 = model.trained.inference_model.infer(batch, skip=True, precision="fp32")
    assert torch.allclose(traced_logits, fp32.logits, atol=1e-5) and torch.equal(traced_gates, fp32.gate_values)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facegraph.engine.export"):  # a state dict loads with the run's precision
        shared = facegraph.export(run, tmp_path / "sd")
    assert shared["precision"] == shared["run_precision"] == "bf16" and not caplog.text


@pytest.mark.skipif(not HAS_ONNX, reason="the onnx package is not installed (pip install 'facegraph[onnx]')")
def test_onnx_export_matches(tiny_run, photos, tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "onnx"
    assert main(["export", str(tiny_run), "--out", str(out), "--format", "onnx"]) == 0
    exported = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(exported)
    operators = {node.op_type for node in exported.graph.node}
    assert "Conv" in operators and "BatchNormalization" not in operators
    runtime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX logits are not compared")
    batch, logits, gates = reference(tiny_run, photos)
    session = runtime.InferenceSession(str(out / "model.onnx"))
    onnx_logits, onnx_gates = session.run(None, {"images": batch.numpy()})
    assert torch.allclose(torch.from_numpy(onnx_logits), logits, atol=1e-4)
    assert torch.equal(torch.from_numpy(onnx_gates), gates)


def test_onnx_without_the_package_is_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed: `import onnx` raises ImportError
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "onnx"), "--format", "onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "pip install 'facegraph[onnx]'" in error
    assert not (tmp_path / "onnx").exists()


def test_export_refuses_a_used_or_overlapping_folder(tiny_run, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FacegraphError, match="exists and is not an empty folder"):
        facegraph.export(tiny_run, tmp_path / "full")
    with pytest.raises(FacegraphError, match="overlaps the run directory"):
        facegraph.export(tiny_run, tiny_run / "export")
    with pytest.raises(FacegraphError, match="export format must be one of"):
        facegraph.export(tiny_run, tmp_path / "x", format="pickle")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
