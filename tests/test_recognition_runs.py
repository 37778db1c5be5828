"""Recognition with a trained run: embeddings, verification on pairs, galleries with open-set rejection.

A tiny ResNet-20 is trained for one epoch on five real LFW people (32 px); the tests then embed, verify and search
with it through the library and the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from facegraph.cli import main
from facegraph.data import Selection, prepare_folder

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEGRAPH_DATA", REPO.parent / "shared" / "data"))
LFW = DATA / "lfw" / "lfw-deepfunneled"

pytestmark = pytest.mark.skipif(not LFW.is_dir(), reason=f"LFW not found at {LFW} (set FACEGRAPH_DATA)")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A one-epoch ResNet-20 on 5 LFW people x 10 photos at 32 px, and its prepared dataset."""
    root = tmp_path_factory.mktemp("recognition")
    data, run = root / "data", root / "run"
    prepare_folder(LFW, data, Selection(image_size=32, min_images=10, per_identity=10, max_identities=5,
                                        split={"train": 0.6, "val": 0.2, "test": 0.2}, workers=1), center_crop=0.45)
    assert main(["train", "--config", "cpu/resnet50", "--data", str(data), "--out", str(run),
                 "--set", "train.epochs=1", "--set", "train.min_steps=0", "--set", "model.image_size=32", "--set", "model.arch=resnet20",
                 "--set", "train.batch_size=8", "--set", "train.precision=fp32", "--set", "train.channels_last=false",
                 "--set", "optim.warmup_epochs=0"]) == 0
    identities = json.loads((run / "dataset.json").read_text())["identities"]
    return {"root": root, "data": data, "run": run, "identities": identities}


def people_with(count: int, exclude: set[str]) -> list[str]:
    """LFW people with at least 10 photos, not in `exclude`, in name order."""
    people = []
    for folder in sorted(LFW.iterdir()):
        if folder.name not in exclude and len(list(folder.glob("*.jpg"))) >= 10:
            people.append(folder.name)
            if len(people) == count:
                break
    return people


def plain_and_flip_embeddings(run: Path, photos: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's embedding e(x), and normalize(e(x) + e(mirror of x)) computed here with the run's model."""
    import torch

    from facegraph.data import load_image_for_inference
    from facegraph.engine.trained import load_trained
    from facegraph.recognition.embedding import run_preprocessing

    trained = load_trained(run)
    faces = torch.stack([load_image_for_inference(p, run_preprocessing(trained, prepared=False)) for p in photos])
    plain = trained.inference_model.embed(faces).embeddings
    mirrored = trained.inference_model.embed(faces.flip(-1)).embeddings  # the photo mirrored left-right
    return plain.numpy(), torch.nn.functional.normalize(plain + mirrored, dim=1).numpy()


def test_embed_prepared_dataset_and_unreadable_photo(tiny_run, tmp_path, capsys):
    from facegraph.data import load_prepared

    out = tmp_path / "embeddings.npz"
    assert main(["embed", str(tiny_run["run"]), str(tiny_run["data"]), "--out", str(out), "--batch-size", "7"]) == 0
    with np.load(out) as saved:
        names, embeddings, gates, gmacs = saved["names"], saved["embeddings"], saved["gates"], saved["gmacs"]
        dense = float(saved["dense_gmacs"])
    dataset = load_prepared(tiny_run["data"])
    assert len(names) == len(dataset.samples) == len(embeddings) == len(gates) == len(gmacs)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert gates.shape[1] == 0 and np.allclose(gmacs, dense)  # a plain ResNet: every block runs

    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    photos = sorted((LFW / tiny_run["identities"][0]).glob("*.jpg"))[:2]
    assert main(["embed", str(tiny_run["run"]), *map(str, photos), str(broken), "--out", str(out), "--flip"]) == 2
    assert str(broken) in capsys.readouterr().err
    with np.load(out) as saved:
        assert list(saved["names"]) == [str(p) for p in photos]
        assert np.allclose(np.linalg.norm(saved["flip_embeddings"], axis=1), 1.0, atol=1e-5)
        assert np.allclose(saved["flip_gmacs"], 2 * saved["gmacs"])
        # flip TTA adds the embedding of the mirrored photo: recomputed here, and unlike the plain embedding
        plain, flipped = plain_and_flip_embeddings(tiny_run["run"], photos)
        assert np.allclose(saved["embeddings"], plain, atol=1e-5)
        assert np.allclose(saved["flip_embeddings"], flipped, atol=1e-5)
        assert np.abs(saved["flip_embeddings"] - saved["embeddings"]).max() > 1e-3


def write_pairs(path: Path, folds: list[tuple[tuple[str, int, int], tuple[str, int, str, int]]]) -> None:
    lines = [f"{len(folds)}\t1"]
    for (name, i, j), (first, a, second, b) in folds:
        lines += [f"{name}\t{i}\t{j}", f"{first}\t{a}\t{second}\t{b}"]
    path.write_text("\n".join(lines) + "\n")


def test_verify_lfw_pairs_counts_missing_and_training_people(tiny_run, tmp_path, capsys):
    trained_people = tiny_run["identities"]
    strangers = people_with(10, set(trained_people))
    folds = []
    for fold in range(10):
        person, other = strangers[fold], strangers[(fold + 1) % 10]
        mismatched_first = trained_people[fold % 5] if fold < 3 else person  # 3 pairs show a training person
        folds.append(((person, 1, 2), (mismatched_first, 3, other, 4)))
    folds[9] = ((strangers[9], 1, 999), folds[9][1])  # image 999 does not exist
    folds[8] = (folds[8][0], (strangers[8], 3, "Nobody_At_All", 1))
    pairs = tmp_path / "pairs.txt"
    write_pairs(pairs, folds)

    assert main(["verify", str(tiny_run["run"]), "--pairs", str(pairs), "--images", str(LFW), "--flip", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pairs_total"] == 20 and summary["pairs_used"] == 18 and summary["pairs_skipped_missing"] == 2
    assert summary["training_identity_pairs"] == 3
    assert set(summary["results"]) == {"plain", "flip"}
    for result in summary["results"].values():
        assert 0.0 <= result["accuracy_mean"] <= 1.0 and len(result["fold_accuracies"]) == 10
        assert [t["far"] for t in result["tar_at_far"]] == [1e-2, 1e-3]
        assert all(t["mismatched_pairs"] == 9 and not t["resolved"] for t in result["tar_at_far"])
    assert summary["results"]["flip"]["mean_gmacs_per_image"] == pytest.approx(2 * summary["mean_gmacs_per_image"])
    out_dir = tiny_run["run"] / "verify" / "pairs"
    skipped = (out_dir / "skipped-pairs.txt").read_text().splitlines()
    assert len(skipped) == 2 and any("_0999.jpg" in line for line in skipped) and any("Nobody_At_All" in line for line in skipped)
    rows = (out_dir / "pairs.csv").read_text().splitlines()
    assert len(rows) == 19 and rows[0].startswith("fold,first,second,person_first,person_second,same,training_identity")
    assert sum(row.split(",")[6] == "1" for row in rows[1:]) == 3
    # the flip similarities are cosines of normalize(e(x) + e(mirror of x)), recomputed here for the first 4 pairs
    records = [dict(zip(rows[0].split(","), row.split(","))) for row in rows[1:5]]
    _, flipped = plain_and_flip_embeddings(tiny_run["run"], [LFW / r[side] for r in records for side in ("first", "second")])
    expected = (flipped[0::2] * flipped[1::2]).sum(axis=1)
    assert np.allclose([float(r["similarity_flip"]) for r in records], expected, atol=1e-5)
    assert max(abs(float(r["similarity_flip"]) - float(r["similarity"])) for r in records) > 1e-3

    # Several centre crops: each fold decided with the crop best on the other folds; each crop alone is what a
    # verify at that crop alone measures.
    assert main(["verify", str(tiny_run["run"]), "--pairs", str(pairs), "--images", str(LFW), "--json",
                 "--center-crop", "0.45", "0.7", "--name", "crops"]) == 0
    plain = json.loads(capsys.readouterr().out)["results"]["plain"]
    assert set(plain["fold_center_crops"]) <= {0.45, 0.7} and len(plain["fold_center_crops"]) == 10
    assert main(["verify", str(tiny_run["run"]), "--pairs", str(pairs), "--images", str(LFW), "--json",
                 "--center-crop", "0.7", "--name", "crop-0.7"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["plain"]["accuracy_mean"] == pytest.approx(
        plain["accuracy_at_each_center_crop"]["0.7"])
    crops_rows = (tiny_run["run"] / "verify" / "crops" / "pairs.csv").read_text().splitlines()
    column = crops_rows[0].split(",").index("center_crop")
    by_fold = dict(zip(range(10), plain["fold_center_crops"]))
    assert all(float(r.split(",")[column]) == by_fold[int(r.split(",")[0])] for r in crops_rows[1:])
    assert main(["verify", str(tiny_run["run"]), "--pairs", str(pairs), "--images", str(LFW),
                 "--center-crop", "0.45", "0.45"]) == 2
    assert "centre crops must be distinct" in capsys.readouterr().err

    # The report draws a verification section from pairs.csv.
    assert main(["report", str(tiny_run["run"]), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Verification: pairs" in page and "verify-pairs-roc.png" in page

    # More than half of the pairs missing is an error.
    write_pairs(pairs, [((name, 1, 900), (name, 3, "Nobody_At_All", 1)) if fold < 6
                        else ((name, 1, 2), (name, 3, strangers[(fold + 1) % 10], 1)) for fold, name in enumerate(strangers)])
    assert main(["verify", str(tiny_run["run"]), "--pairs", str(pairs), "--images", str(LFW)]) == 2
    assert "12 of 20 pairs have an image missing" in capsys.readouterr().err


def test_verify_pairs_from_prepared(tiny_run, tmp_path, capsys):
    people = tmp_path / "people"
    for person in people_with(20, set()):
        for photo in sorted((LFW / person).glob("*.jpg"))[:3]:
            (people / person).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, people / person / photo.name)
    data = tmp_path / "pairs-data"
    prepare_folder(people, data, Selection(image_size=32, split={"train": 0.0, "val": 0.0, "test": 1.0}, workers=1),
                   center_crop=0.45)
    assert main(["verify", str(tiny_run["run"]), "--pairs-from", str(data), "--num-pairs", "20", "--seed", "1",
                 "--name", "prepared", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pairs_used"] == 20 and summary["pairs_skipped_missing"] == 0
    expected_overlap = sum(row.split(",")[6] == "1" for row in
                           (tiny_run["run"] / "verify" / "prepared" / "pairs.csv").read_text().splitlines()[1:])
    assert summary["training_identity_pairs"] == expected_overlap
    assert summary["source"] == {"kind": "prepared", "dataset": str(data), "split": "test", "num_pairs": 20, "seed": 1,
                                 "folds": 10}


def test_open_set_gallery_rejects_a_stranger_and_caches(tiny_run, tmp_path, capsys):
    from facegraph.engine.trained import load_trained
    from facegraph.recognition.embedding import embed_images

    people = people_with(8, set())
    gallery = tmp_path / "gallery"
    known_photo = sorted((LFW / people[0]).glob("*.jpg"))[0]
    (gallery / people[0]).mkdir(parents=True)
    shutil.copyfile(known_photo, gallery / people[0] / known_photo.name)
    shutil.copyfile(sorted((LFW / people[0]).glob("*.jpg"))[1], gallery / people[0] / "second.jpg")
    # Two "people" whose photos are mirror images of each other: a near-duplicate impostor pair, so the threshold
    # (just above the highest impostor score when impostor pairs are few) is high.
    twin = sorted((LFW / people[1]).glob("*.jpg"))[0]
    for name, image in (("Twin_A", Image.open(twin)), ("Twin_B", ImageOps.mirror(Image.open(twin)))):
        (gallery / name).mkdir()
        image.save(gallery / name / "face.png")

    # The stranger: the photo of a person absent from the gallery that is least like any gallery photo.
    trained = load_trained(tiny_run["run"])
    gallery_files = sorted(gallery.rglob("*.*"))
    candidates = [sorted((LFW / person).glob("*.jpg"))[0] for person in people[2:]]
    embedded = embed_images(trained, [*gallery_files, *candidates])
    gallery_rows, candidate_rows = embedded.embeddings[:len(gallery_files)], embedded.embeddings[len(gallery_files):]
    stranger = candidates[int(np.argmin((candidate_rows @ gallery_rows.T).max(axis=1)))]

    command = ["predict", str(tiny_run["run"]), str(known_photo), str(stranger), "--gallery", str(gallery), "--json"]
    assert main(command) == 0
    document = json.loads(capsys.readouterr().out)
    known, unknown = document["predictions"]
    assert known["gallery"]["answer"] == people[0] and known["gallery"]["best_score"] == pytest.approx(1.0, abs=1e-5)
    assert unknown["gallery"]["answer"] == "unknown"
    assert unknown["gallery"]["best_score"] < document["gallery"]["threshold"] <= known["gallery"]["best_score"]
    assert len(known["top5"]) == 5  # the closed-set answer stays
    assert document["gallery"]["people"] == 3 and document["gallery"]["images"] == 4
    assert document["gallery"]["from_cache"] is False
    first_cache = Path(document["gallery"]["cache"])
    assert first_cache.parent == tiny_run["run"] / "galleries" and first_cache.is_file()

    assert main(command) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["gallery"]["from_cache"] is True and document["gallery"]["cache"] == str(first_cache)
    # Another layout rounds otherwise: its embeddings are cached apart, and the default's cache stays.
    assert main([*command, "--layout", "nchw"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["gallery"]["from_cache"] is False and document["gallery"]["cache"] == \
        str(first_cache.with_name(f"{first_cache.stem}-nchw.npz"))
    assert document["predictions"][0]["gallery"]["answer"] == people[0] and first_cache.is_file()
    # Photos framed otherwise: queries and gallery are cut alike (the gallery photo still matches itself exactly), the
    # closed-set answer sees the new cut too, and the gallery is cached apart.
    assert main(command) == 0
    default_top5 = json.loads(capsys.readouterr().out)["predictions"][0]["top5"]
    assert main([*command, "--center-crop", "0.5"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["center_crop"] == 0.5 and document["gallery"]["from_cache"] is False
    assert document["gallery"]["cache"] == str(first_cache.with_name(f"{first_cache.stem}-crop0.5.npz"))
    assert document["predictions"][0]["gallery"]["best_score"] == pytest.approx(1.0, abs=1e-5)
    assert document["predictions"][0]["top5"] != default_top5
    with pytest.raises(SystemExit) as refused:  # argparse refuses it before the run is loaded
        main([*command, "--center-crop", "1.5"])
    assert refused.value.code == 2 and "argument --center-crop: 1.5 is out of range" in capsys.readouterr().err

    # A changed gallery file (new content, new mtime) is a new gallery: embedded again under another fingerprint.
    changed = gallery / people[0] / "second.jpg"
    shutil.copyfile(sorted((LFW / people[0]).glob("*.jpg"))[2], changed)
    os.utime(changed, (time.time() + 10, time.time() + 10))
    assert main(command) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["gallery"]["from_cache"] is False and document["gallery"]["cache"] != str(first_cache)

    assert main(["predict", str(tiny_run["run"]), str(stranger), "--gallery", str(gallery)]) == 0
    assert "gallery: unknown" in capsys.readouterr().out


def test_a_folder_of_photos_holds_every_format_and_linked_folder_and_names_the_rest(tmp_path, caplog):
    import logging

    from facegraph.recognition.embedding import image_files

    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    (folder / "ann").mkdir(parents=True)
    elsewhere.mkdir()
    for name in ("a.webp", "b.tif", "c.gif", "d.JPG"):
        Image.new("RGB", (8, 8), (200, 40, 40)).save(folder / "ann" / name)
    Image.new("RGB", (8, 8)).save(elsewhere / "e.png")
    (folder / "bob").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(folder, target_is_directory=True)  # a link back up: read once, not forever
    (folder / "ann" / "notes.txt").write_text("not a photo")
    with caplog.at_level(logging.WARNING, logger="facegraph.recognition.embedding"):
        found = image_files(folder)
    assert [p.relative_to(folder).as_posix() for p in found] == ["ann/a.webp", "ann/b.tif", "ann/c.gif", "ann/d.JPG",
                                                                 "bob/e.png"]
    assert "1 files not read as photos (extensions .txt;" in caplog.text
