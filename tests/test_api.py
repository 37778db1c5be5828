"""The public Python API (facegraph.load, FaceModel, build_model, export) and the examples of docs/api.md, run against
a tiny ConvNet-IIG trained here on synthetic photos with gender lists (no real data needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import PEOPLE, write_photo

import facegraph
from facegraph.errors import DataError, FacegraphError

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "api.md"


def test_import_facegraph_does_not_import_torch():
    code = ("import sys, facegraph, facegraph.errors, facegraph.cli; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'load' in dir(facegraph); facegraph.load; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_and_private_rest():
    assert set(facegraph.__all__) == {"__version__", "AttributeEstimate", "Embeddings", "FaceModel", "GatedOutput",
                                      "PhotoPrediction", "PredictionFailure", "build_model", "export",
                                      "keep_freed_memory", "load", "load_config"}
    for name in facegraph.__all__:  # every public name resolves, lazily through facegraph.api
        assert getattr(facegraph, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'predict_images'"):
        facegraph.predict_images  # noqa: B018


def test_load_embed_predict_and_attributes(tiny_run, photos):
    model = facegraph.load(tiny_run)
    assert isinstance(model, facegraph.FaceModel) and not model.model.training
    assert model.identities == list(PEOPLE) and model.image_size == 32 and "gender" in model.features

    tensor = model.preprocess(photos[0])
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    with Image.open(photos[0]) as image:
        assert torch.allclose(model.preprocess(image), tensor, atol=1e-6)

    embeddings, gates = model.embed(photos)
    assert embeddings.shape[0] == 3 and gates.shape == (3, model.model.num_gates)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    from_tensors = model.embed(torch.stack([model.preprocess(p) for p in photos]))
    assert torch.allclose(from_tensors.embeddings, embeddings, atol=1e-6)
    assert torch.equal(from_tensors.gate_values, gates)
    dense = model.embed(photos, skip=False)
    assert torch.allclose(dense.embeddings, embeddings, atol=1e-5) and torch.equal(dense.gate_values, gates)
    # Read and run a photo at a time (a list, or a tensor split along its batch): the same answers, in input order.
    for one_at_a_time in (model.embed(photos, batch_size=1),
                          model.embed(from_tensors_input(model, photos), batch_size=2)):
        assert torch.allclose(one_at_a_time.embeddings, embeddings, atol=1e-5)
        assert torch.equal(one_at_a_time.gate_values, gates)
    logits, gate_values = model.infer(iter(photos), batch_size=2)  # any iterable of photos
    assert logits.shape == (3, len(PEOPLE)) and torch.equal(gate_values, gates)

    predictions = model.predict([str(p) for p in photos])
    assert [p.image for p in predictions] == [str(p) for p in photos]
    for prediction, row in zip(predictions, gates):
        assert prediction.top5[0][0] in PEOPLE and prediction.gates == "".join(str(int(g)) for g in row)

    attributes = model.read_attributes(photos)
    assert len(attributes) == 3
    for by_feature, row in zip(attributes, gates):
        gender = by_feature["gender"]
        assert gender.method == "iig-masks" and gender.label in ("male", "female")
        assert gender.distance == min(gender.distances.values())
    assert [a["gender"].label for a in attributes] == [p.attributes[0].label for p in predictions]


def from_tensors_input(model: facegraph.FaceModel, photos: list) -> torch.Tensor:
    return torch.stack([model.preprocess(p) for p in photos])


def test_bad_inputs_are_one_line_errors(tiny_run, tmp_path):
    model = facegraph.load(tiny_run)
    with pytest.raises(DataError, match="torch.uint8 tensor: tensors are taken as preprocessed float images"):
        model.embed(torch.zeros(3, 32, 32, dtype=torch.uint8))
    for wrong, named in ((None, "got NoneType"), (5, "got int"), (b"\xff\xd8", "got bytes"), ({"a": 1}, "got dict"),
                         ([tmp_path / "a.jpg", 3], "image 1: expected a path")):
        with pytest.raises(DataError, match=named):
            model.embed(wrong)
    with pytest.raises(DataError, match="predict takes photo files"):
        model.predict(Image.new("RGB", (32, 32)))
    with pytest.raises(DataError, match="batch_size must be a whole number >= 1, got 0"):
        model.embed(tmp_path / "a.jpg", batch_size=0)
    with pytest.raises(DataError, match=r"expected preprocessed images of shape \(3, 32, 32\)"):
        model.embed(torch.zeros(3, 64, 64))
    with pytest.raises(DataError, match="no such image file"):
        model.embed(tmp_path / "missing.jpg")
    with pytest.raises(DataError, match="predict takes photo files"):
        model.predict([torch.zeros(3, 32, 32)])
    with pytest.raises(FacegraphError, match="checkpoint must be best or last"):
        facegraph.load(tiny_run, "newest")
    with pytest.raises(FacegraphError, match="does not exist"):
        facegraph.load(tmp_path / "nowhere")


def test_build_model_and_load_config():
    net = facegraph.build_model("resnet20", 5, width=0.5, target_rates=[1.0] + [0.5] * 7 + [1.0])
    logits, gates = net.eval()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5) and gates.shape == (2, 7)
    assert facegraph.load_config("cpu/aig-t0.5", ["train.epochs=2"]).train.epochs == 2


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_docs_api_examples_run(tiny_run, tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/api.md, in order, in one namespace, from a folder holding runs/iig and photos/."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "iig").symlink_to(tiny_run, target_is_directory=True)
    write_photo(tmp_path / "photos" / "a.jpg", (200, 40, 40), 1, (70, 90))
    write_photo(tmp_path / "photos" / "b.jpg", (40, 40, 200), 2, (64, 64))
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOCS.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "docs_api"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"docs/api.md python block {number} failed: {type(error).__name__}: {error}\n{block}")
    assert (tmp_path / "shared" / "iig" / "export.json").is_file()
