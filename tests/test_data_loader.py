"""Training-time loading: the memory-mapped cache, determinism, sharding, augmentation, normalisation,
and a user photo prepared for inference."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegraph.data import Batch, Selection, load_image_for_inference, load_prepared, make_loader, prepare_folder
from facegraph.data.images import FaceCrop, cut_face, load_faces_for_inference, normalize, open_image
from facegraph.data.loader import augment_batch, image_cache
from facegraph.errors import ConfigError, DataError


def _decoded(dataset, index: int) -> torch.Tensor:
    pixels = np.asarray(Image.open(dataset.root / dataset.samples[index].path).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def test_eval_batches_are_the_normalised_images_in_order(data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    loader = make_loader(dataset, "test", 3, train=False, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 3  # 8 test images in batches of 3, last one partial
    indices = torch.cat([b.indices for b in batches]).tolist()
    assert indices == dataset.split_indices("test")
    first = batches[0]
    assert isinstance(first, Batch) and first.images.dtype == torch.float32 and first.images.shape == (3, 3, 16, 16)
    expected = normalize(torch.stack([_decoded(dataset, i) for i in first.indices.tolist()]), dataset.mean, dataset.std)
    assert torch.allclose(first.images, expected, atol=1e-5)
    assert first.identities.tolist() == [dataset.samples[i].identity for i in first.indices.tolist()]


def test_cache_is_built_once_and_rebuilt_when_the_manifest_changes(data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    first = image_cache(dataset)
    cache_file = Path(first.filename)
    stamp = cache_file.stat().st_mtime_ns
    assert cache_file.parent == dataset.root / "cache"
    assert image_cache(dataset).shape == (len(dataset.samples), 3, 16, 16) and cache_file.stat().st_mtime_ns == stamp
    reordered = dataclasses.replace(dataset, samples=list(reversed(dataset.samples)))
    rebuilt = image_cache(reordered)
    assert torch.equal(torch.from_numpy(np.array(rebuilt[0])), _decoded(reordered, 0))
    assert torch.equal(torch.from_numpy(np.array(image_cache(dataset)[0])), _decoded(dataset, 0))


def test_same_seed_and_epoch_give_the_same_batches(data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)

    def epoch(seed: int, number: int) -> list[Batch]:
        loader = make_loader(dataset, "train", 5, train=True, seed=seed)
        loader.set_epoch(number)
        return list(loader)

    a, b, c, d = epoch(1, 0), epoch(1, 0), epoch(1, 1), epoch(2, 0)
    assert all(torch.equal(x.images, y.images) and torch.equal(x.indices, y.indices) for x, y in zip(a, b))
    order = lambda batches: torch.cat([x.indices for x in batches]).tolist()  # noqa: E731
    assert order(a) != order(c) and order(a) != order(d)
    train = set(dataset.split_indices("train"))
    for batches in (a, c, d):  # 24 train images in batches of 5, the last partial one dropped: 20 distinct
        assert len(set(order(batches))) == len(order(batches)) == 20 and set(order(batches)) <= train


def test_replicas_get_disjoint_equal_shards(data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    train = set(dataset.split_indices("train"))
    shards = [make_loader(dataset, "train", 2, train=True, seed=4, num_replicas=5, rank=r).shard() for r in range(5)]
    assert {len(s) for s in shards} == {len(train) // 5}
    seen = [int(i) for s in shards for i in s]
    assert len(seen) == len(set(seen)) and set(seen) <= train
    loaders = [make_loader(dataset, "test", 2, train=False, seed=0, num_replicas=3, rank=r) for r in range(3)]
    evaluated = [int(i) for loader in loaders for batch in loader for i in batch.indices]
    assert set(evaluated) == set(dataset.split_indices("test")) and len(evaluated) == 9  # 8 padded to 3 x 3
    assert all(len(loader) == 2 for loader in loaders)
    with pytest.raises(DataError):
        make_loader(dataset, "train", 2, train=True, seed=0, num_replicas=2, rank=2)


def test_a_split_the_dataset_lacks_is_a_clear_error(tmp_path: Path, data_synthetic_folder: Path) -> None:
    prepare_folder(data_synthetic_folder, tmp_path / "two", Selection(image_size=8))
    with pytest.raises(DataError, match=r"no 'val' images \(its splits: train, test\)"):
        make_loader(load_prepared(tmp_path / "two"), "val", 4, train=False, seed=0)


def test_augmentation_is_a_flip_and_small_shift_of_each_image() -> None:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(6, 3, 12, 12), dtype=np.uint8))
    augmented = augment_batch(images, np.random.default_rng(1), 2)
    assert augmented.dtype == torch.uint8 and augmented.shape == images.shape
    flips = 0
    for original, result in zip(images, augmented):
        matches = []
        for flip in (False, True):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    rows = (torch.arange(12) + dy).clamp(0, 11)
                    cols = (torch.arange(12) + dx).clamp(0, 11)
                    candidate = original[:, rows][:, :, cols]
                    candidate = candidate.flip(-1) if flip else candidate
                    if torch.equal(candidate, result):
                        matches.append(flip)
        assert matches, "augmented image is not a flip/shift of its original"
        flips += matches[0]
    assert 0 < flips < 6


def test_train_loader_augments_but_eval_does_not(data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    plain = make_loader(dataset, "train", 24, train=True, seed=0, augment=False)
    augmented = make_loader(dataset, "train", 24, train=True, seed=0)
    a, b = next(iter(plain)), next(iter(augmented))
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.images, b.images)
    expected = normalize(torch.stack([_decoded(dataset, i) for i in a.indices.tolist()]), dataset.mean, dataset.std)
    assert torch.allclose(a.images, expected, atol=1e-5)
    # Normalised with the train statistics: about zero mean and unit deviation per channel.
    assert a.images.mean(dim=(0, 2, 3)).abs().max() < 0.05
    assert (a.images.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05
    # an evaluation loader (augment left at its default) yields the training images unaugmented, in split order
    evaluation = list(make_loader(dataset, "train", 10, train=False, seed=0))
    order = dataset.split_indices("train")
    assert torch.cat([batch.indices for batch in evaluation]).tolist() == order
    expected = normalize(torch.stack([_decoded(dataset, i) for i in order]), dataset.mean, dataset.std)
    assert torch.allclose(torch.cat([batch.images for batch in evaluation]), expected, atol=1e-5)


def test_inference_photo_matches_the_prepared_image(data_small_lfw: Path, data_lfw_dir: Path) -> None:
    dataset = load_prepared(data_small_lfw)
    sample = dataset.samples[0]
    tensor = load_image_for_inference(data_lfw_dir / sample.source, dataset.preprocessing())
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    prepared = normalize(_decoded(dataset, 0), dataset.mean, dataset.std)
    assert (tensor - prepared).abs().mean() < 0.1  # same cut; only the JPEG re-encoding differs
    # A run's dataset.json carries the same four keys among others: the same tensor.
    run_summary = {"root": str(dataset.root), "identities": [i.name for i in dataset.identities], **dataset.preprocessing()}
    assert torch.equal(tensor, load_image_for_inference(data_lfw_dir / sample.source, run_summary))
    with pytest.raises(DataError, match="preprocessing mapping"):
        load_image_for_inference(data_lfw_dir / sample.source, dataset)  # the one shape only
    with pytest.raises(DataError, match="lack center_crop"):
        load_image_for_inference(data_lfw_dir / sample.source, {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3})


def _photo(path: Path, orientation: int = 1) -> Path:
    """A 250 x 200 JPEG of smooth colour ramps (so crops differ), with an EXIF orientation when not 1."""
    ramp = np.linspace(0, 255, 250, dtype=np.float64)
    pixels = np.stack([np.tile(ramp, (200, 1)), np.tile(ramp[:200, None], (1, 250)), np.full((200, 250), 90.0)], -1)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=92, exif=exif)
    return path


@pytest.mark.parametrize("orientation, decodings", [(1, 2), (6, 1)])
def test_faces_at_several_crops_share_decodings_and_equal_each_crop_alone(tmp_path: Path, orientation: int,
                                                                         decodings: int) -> None:
    photo = _photo(tmp_path / "photo.jpg", orientation)
    crops = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
    alone = [cut_face(open_image(photo, "p"), FaceCrop(center_fraction=c), 32, "p", upright=True) for c in crops]
    decoded: dict = {}
    shared = [cut_face(open_image(photo, "p"), FaceCrop(center_fraction=c), 32, "p", upright=True, decoded=decoded)
              for c in crops]
    # Upright, the tight crops need libjpeg's 1/2 scale to keep 32 face pixels and the wide ones its 1/4: two
    # decodings for six crops. A rotated photo is decoded whole, once.
    assert len(decoded) == decodings
    assert all(np.array_equal(a, b) for a, b in zip(alone, shared))
    assert not np.array_equal(alone[0], alone[-1])
    mean, std = [0.5] * 3, [0.25] * 3
    tensors = load_faces_for_inference(photo, {"image_size": 32, "center_crop": 1.0, "mean": mean, "std": std}, crops)
    expected = [normalize(torch.from_numpy(face).permute(2, 0, 1), mean, std) for face in alone]
    assert all(torch.equal(tensor, face) for tensor, face in zip(tensors, expected))
    with pytest.raises(ConfigError, match=r"centre crops must be fractions in \(0, 1\]"):
        load_faces_for_inference(photo, {"image_size": 32, "center_crop": 1.0, "mean": mean, "std": std}, [0.5, 1.2])


def test_inference_on_an_unreadable_file_names_it(tmp_path: Path, data_synthetic_prepared: Path) -> None:
    dataset = load_prepared(data_synthetic_prepared)
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="holiday.jpg"):
        load_image_for_inference(bad, dataset.preprocessing())
    with pytest.raises(DataError, match="nothing.jpg"):
        load_image_for_inference(tmp_path / "nothing.jpg", {"image_size": 16, "center_crop": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3})
