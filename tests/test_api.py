"""The public Python API (facegraph.load, FaceModel, build_model, export) and the examples of docs/api.md, run against
a tiny ConvNet-IIG trained here on synthetic photos with gender lists (no real data needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facegraph
from facegraph.cli import main
from facegraph.errors import DataError, FacegraphError

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "api.md"
PEOPLE = {"Ann_Able": ((200, 40, 40), "female"), "Bob_Baker": ((40, 200, 40), "male"),
          "Cid_Cole": ((40, 40, 200), "male"), "Dee_Dunn": ((200, 200, 40), "female")}
TRAIN_OPTIONS = ["--set", "train.epochs=1", "--set", "train.min_steps=0", "--set", "model.arch=resnet20", "--set", "model.image_size=32",
                 "--set", "train.batch_size=16", "--set", "train.precision=fp32", "--set", "train.channels_last=false",
                 "--set", "optim.warmup_epochs=0"]


def write_photo(path: Path, rgb: tuple[int, int, int], seed: int, size: tuple[int, int] = (48, 48)) -> Path:
    pixels = np.clip(np.array(rgb) + np.random.default_rng(seed).integers(-40, 41, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def prepare_tiny_dataset(root: Path) -> Path:
    """Four identities x 10 synthetic photos with LFW-style gender lists, prepared at 32 px; returns the data dir."""
    photos, lists = root / "faces", root / "attributes"
    male, female = [], []
    for index, (name, (rgb, gender)) in enumerate(PEOPLE.items()):
        for number in range(10):
            file = f"{name}_{number + 1:04d}.jpg"
            write_photo(photos / name / file, rgb, 100 * index + number)
            (male if gender == "male" else female).append(file)
    lists.mkdir()
    (lists / "lfw_male_names.txt").write_text("\n".join(male) + "\n")
    (lists / "lfw_female_names.txt").write_text("\n".join(female) + "\n")
    data = root / "data"
    assert main(["prepare", "folder", str(photos), "--min-images", "10", "--image-size", "32", "--center-crop", "0.9",
                 "--split", "60/20/20", "--attributes-lfw", str(lists), "--out", str(data), "--no-progress"]) == 0
    return data


def train_tiny_run(root: Path, run: Path) -> Path:
    """A one-epoch ConvNet-IIG (gender) ResNet-20 at 32 px, trained and evaluated by the CLI."""
    data = prepare_tiny_dataset(root)
    assert main(["train", "--config", "cpu/iig-gender", "--data", str(data), "--out", str(run), *TRAIN_OPTIONS]) == 0
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api")
    return train_tiny_run(root, root / "runs" / "iig")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    return [write_photo(folder / f"{i}.{'png' if i % 2 else 'jpg'}", rgb, 7 + i, size)
            # The JPEG is over twice the model's input: decoding it at reduced scale, as preparing does, matters.
            for i, (rgb, size) in enumerate([((200, 40, 40), (150, 200)), ((40, 200, 40), (100, 50)), ((40, 40, 200), (32, 32))])]


def test_import_facegraph_does_not_import_torch():
    code = ("import sys, facegraph, facegraph.errors, facegraph.cli; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'load' in dir(facegraph); facegraph.load; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_and_private_rest():
    assert set(facegraph.__all__) == {"__version__", "Embeddings", "FaceModel", "build_model", "export",
                                      "keep_freed_memory", "load", "load_config"}
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


def test_bad_inputs_are_one_line_errors(tiny_run, tmp_path):
    model = facegraph.load(tiny_run)
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
