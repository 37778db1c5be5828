"""`facegraph predict` as a library: photos of any size, batching, eq. 5 distances, cost, unreadable files."""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegraph.cli import main
from facegraph.data.images import load_image_for_inference
from facegraph.config import RunConfig
from facegraph.engine.predict import PhotoPrediction, PredictionFailure, predict_images
from facegraph.engine.trained import TrainedRun
from facegraph.flops import cost_table
from facegraph.graphs import alternate_masks, middle_gated_schedule
from facegraph.models import build_model, num_blocks
from facegraph.rundir import RunDir

IMAGE_SIZE = 32
IDENTITIES = [f"Person_{i}" for i in range(7)]
FEATURES = {"gender": ["male", "female"], "age": ["<35", "35-45", "45-55", ">55"]}


def synthetic_run(tmp_path: Path) -> TrainedRun:
    torch.manual_seed(0)
    schedule = middle_gated_schedule(num_blocks("resnet20"), 0.5, 1, 1)
    model = build_model("resnet20", len(IDENTITIES), width=0.5, target_rates=schedule, initial_open_rate=0.5)
    model.eval()
    # Sharper gates than at initialisation, so that different photos take different graphs.
    with torch.no_grad():
        for gate in model.gates.values():
            gate.fc2.weight.normal_(0, 3.0)
            gate.bn.running_var.fill_(0.01)
    dataset = {"root": str(tmp_path), "image_size": IMAGE_SIZE, "center_crop": 0.8, "mean": [0.5] * 3, "std": [0.25] * 3,
               "identities": IDENTITIES, "features": FEATURES}
    return TrainedRun(RunDir(tmp_path), RunConfig(), dataset, model, "best",
                      feature_masks={"gender": alternate_masks("gender", FEATURES["gender"], model.num_gates)},
                      cost_table=cost_table(model, IMAGE_SIZE))


def write_photos(tmp_path: Path) -> list[Path]:
    generator = np.random.default_rng(3)
    photos = []
    for index, (width, height) in enumerate([(50, 70), (200, 100), (32, 32), (81, 64), (120, 120)]):
        path = tmp_path / f"photo{index}.{'png' if index % 2 else 'jpg'}"
        colour = generator.integers(0, 255, 3)
        pixels = np.clip(colour + generator.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path)
        photos.append(path)
    return photos


def test_predictions_match_the_model_and_the_cost_table(tmp_path):
    info = synthetic_run(tmp_path)
    model = info.model
    photos = write_photos(tmp_path)
    results = predict_images(info, photos, batch_size=2)
    assert [r.image for r in results] == [str(p) for p in photos]
    batch = torch.stack([load_image_for_inference(p, info.dataset) for p in photos])
    with torch.no_grad():
        logits, gate_values = model(batch)  # dense, not skipping: must take the same graphs
    probabilities = logits.softmax(dim=1)
    table = info.cost_table
    gated_branches = [b.branch.macs() for b in table.blocks if b.gated]
    seen_graphs = set()
    for row, result in enumerate(results):
        assert isinstance(result, PhotoPrediction)
        names = [name for name, _ in result.top5]
        assert names == [IDENTITIES[i] for i in probabilities[row].argsort(descending=True)[:5].tolist()]
        assert [p for _, p in result.top5] == pytest.approx(sorted(probabilities[row].tolist(), reverse=True)[:5], abs=1e-5)
        gates = [int(g) for g in gate_values[row].tolist()]
        assert result.gates == "".join(map(str, gates))
        assert result.open_gates == [j + 1 for j, g in enumerate(gates) if g]
        assert result.blocks_run == (len(model.blocks) - model.num_gates) + sum(gates)
        spent = table.always_run_macs() + sum(macs for macs, g in zip(gated_branches, gates) if g)
        assert result.gmacs == pytest.approx(spent / 1e9)
        assert result.gmacs <= result.dense_gmacs
        # Eq. 5 with 0/1 masks: the distance to a label is the number of gates that disagree with its mask.
        (gender,) = result.attributes
        masks = info.feature_masks["gender"].label_gates
        mismatches = {label: sum(gates[j] != (j in masks[i]) for j in range(model.num_gates))
                      for i, label in enumerate(FEATURES["gender"])}
        assert gender.distances == pytest.approx(mismatches)
        assert gender.distance == min(mismatches.values()) and mismatches[gender.label] == gender.distance
        seen_graphs.add(result.gates)
    assert len(seen_graphs) > 1, "the fixture should make photos take different graphs"
    one_by_one = predict_images(info, photos, batch_size=1)
    assert [r.gates for r in one_by_one] == [r.gates for r in results]


def test_unreadable_photos_are_named_and_the_rest_still_predicted(tmp_path):
    info = synthetic_run(tmp_path)
    good = write_photos(tmp_path)[:2]
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("this is text")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:200])
    missing = tmp_path / "missing.png"
    results = predict_images(info, [good[0], not_an_image, missing, truncated, good[1]], batch_size=4)
    assert [type(r) for r in results] == [PhotoPrediction, PredictionFailure, PredictionFailure, PredictionFailure, PhotoPrediction]
    for failure, path in zip(results[1:4], (not_an_image, missing, truncated)):
        assert str(path) in failure.error
    assert "not an image" in results[1].error
    alone = predict_images(info, [good[1]])
    assert alone[0].gates == results[4].gates
    assert [n for n, _ in alone[0].top5] == [n for n, _ in results[4].top5]
    assert [p for _, p in alone[0].top5] == pytest.approx([p for _, p in results[4].top5], abs=1e-5)


def test_plain_resnet_runs_every_block(tmp_path):
    plain = build_model("resnet20", len(IDENTITIES), width=0.5)
    info = dataclasses.replace(synthetic_run(tmp_path), model=plain, feature_masks={},
                               cost_table=cost_table(plain, IMAGE_SIZE))
    (result,) = predict_images(info, write_photos(tmp_path)[:1])
    assert result.gates == "" and result.open_gates == [] and result.attributes == []
    assert result.blocks_run == result.blocks_total == len(plain.blocks)
    assert result.gmacs == pytest.approx(result.dense_gmacs)


def test_stored_train_prototypes_give_aig_attributes(tmp_path):
    info = dataclasses.replace(synthetic_run(tmp_path), feature_masks={})
    k = info.model.num_gates
    male, female = [1.0] * k, [0.0] * k
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "test.json").write_text(json.dumps({"readout": {
        "gender": {"method": "train-prototypes: ...", "labels": ["male", "female"], "prototypes": [male, female]},
        "age": {"method": "train-prototypes: ...", "labels": FEATURES["age"], "prototypes": [male, female, [None] * k, [None] * k]},
    }}))
    for result in predict_images(info, write_photos(tmp_path)):
        gender, age = result.attributes
        opened = result.gates.count("1")
        assert gender.method == age.method == "train-prototypes"
        assert gender.distances == pytest.approx({"male": k - opened, "female": opened})
        assert gender.label == min(gender.distances, key=gender.distances.get)  # ties: the first label
        assert age.label in ("<35", "35-45") and age.distances[">55"] == float("inf")


def test_a_photo_of_the_gallery_itself_is_marked_not_recognised(tiny_run, tmp_path, capsys, caplog):
    faces = tiny_run.parents[1] / "faces"  # the photos the tiny run was prepared from, a folder per person
    gallery = tmp_path / "gallery"
    for person in ("Ann_Able", "Bob_Baker"):
        (gallery / person).mkdir(parents=True)
        for photo in sorted((faces / person).glob("*.jpg"))[:2]:
            shutil.copyfile(photo, gallery / person / photo.name)
    enrolled = sorted((gallery / "Ann_Able").glob("*.jpg"))
    same_file = gallery / "Bob_Baker" / ".." / "Ann_Able" / enrolled[0].name  # another spelling of the same file
    copy = shutil.copyfile(enrolled[1], tmp_path / "copy.jpg")
    other = sorted((faces / "Ann_Able").glob("*.jpg"))[5]  # Ann, but not a gallery image
    command = ["predict", str(tiny_run), str(same_file), str(copy), str(other), "--gallery", str(gallery)]
    with caplog.at_level(logging.WARNING, logger="facegraph.recognition.run_gallery"):
        assert main([*command, "--json"]) == 0
    answers = [p["gallery"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    assert [a["in_gallery"] for a in answers] == [True, True, False]
    assert answers[0]["answer"] == "Ann_Able" and answers[0]["best_score"] == pytest.approx(1.0, abs=1e-5)
    assert f"2 query photo(s) are images of the gallery itself or copies ({same_file}, {copy})" in caplog.text
    assert main(command) == 0
    printed = capsys.readouterr().out.split(str(other))
    assert printed[0].count("note: this photo is one of the gallery's images") == 2 and "note:" not in printed[1]


def test_an_original_photo_of_a_prepared_gallery_is_marked(tiny_run, tmp_path, capsys):
    # The prepared gallery holds 32 px cuts of the photos in faces/; querying one of those photos is querying the
    # gallery itself, though no file of the prepared dataset equals it byte for byte.
    data, faces = tiny_run.parents[1] / "data", tiny_run.parents[1] / "faces"
    original = sorted((faces / "Ann_Able").glob("*.jpg"))[0]
    copy = shutil.copyfile(original, tmp_path / "copy.jpg")
    stranger = tmp_path / "stranger.jpg"
    Image.new("RGB", (48, 48), (90, 30, 160)).save(stranger)
    assert main(["predict", str(tiny_run), str(original), str(copy), str(stranger), "--gallery", str(data),
                 "--json"]) == 0
    answers = [p["gallery"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    assert [a["in_gallery"] for a in answers] == [True, True, False]
