"""Cached loader vs per-item JPEG decoding, measured side by side in one run.

Both produce the same training batches (random flip + translation, normalised, batch of B): the cached loader
gathers them from the memory-mapped uint8 array and augments on tensors; the baseline opens and decodes each
JPEG with PIL, augments it alone (numpy) and stacks the batch, as a per-item Dataset would. Prints images/s of each and
their ratio (medians over interleaved epochs, with the spread and a warning above 10 %), plus the one-off cost of
building the cache.

    python benchmarks/loading.py [--dataset DIR] [--image-size 64] [--batch-size 128] [--epochs 5]

Without --dataset it prepares LFW (>= 10 photos per person) from $FACEGRAPH_DATA into a temporary folder.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegraph.data import PreparedDataset, Selection, find_data_root, load_prepared, make_loader, prepare_lfw
from facegraph.data.images import normalize
from facegraph.data.loader import CACHE_DIR

from spread import SPREAD_WARNING, spread


def per_item_epoch(dataset: PreparedDataset, order: list[int], batch_size: int, rng: np.random.Generator) -> int:
    """One epoch the per-item way: decode each JPEG with PIL, flip/shift it alone (numpy), stack, normalise."""
    shift = max(1, dataset.image_size // 16)
    size = dataset.image_size
    seen = 0
    for start in range(0, len(order) - batch_size + 1, batch_size):
        items = []
        for index in order[start : start + batch_size]:
            with Image.open(dataset.root / dataset.samples[index].path) as image:
                item = np.asarray(image.convert("RGB"))
            if rng.random() < 0.5:
                item = item[:, ::-1]
            dy, dx = rng.integers(0, 2 * shift + 1, size=2)
            padded = np.pad(item, ((shift, shift), (shift, shift), (0, 0)), mode="edge")
            items.append(padded[dy : dy + size, dx : dx + size])
        batch = normalize(torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2), dataset.mean, dataset.std)
        seen += batch.shape[0]
    return seen


def cached_epoch(loader) -> int:
    return sum(batch.images.shape[0] for batch in loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="a prepared dataset (default: LFW prepared into a temporary folder)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5, help="interleaved epochs of each (medians reported; >= 3)")
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error(f"--epochs {args.epochs}: a spread needs at least 3 interleaved epochs")

    scratch = None
    if args.dataset is None:
        data_root = find_data_root()
        if data_root is None:
            parser.error("give --dataset, or set FACEGRAPH_DATA so that LFW can be prepared")
        scratch = Path(tempfile.mkdtemp(prefix="facegraph-bench-"))
        started = time.perf_counter()
        prepare_lfw(scratch / "lfw", Selection(image_size=args.image_size, min_images=10), lfw_dir=data_root / "lfw" / "lfw-deepfunneled")
        print(f"prepared LFW (>= 10 per person, {args.image_size} px) in {time.perf_counter() - started:.1f} s")
        args.dataset = scratch / "lfw"
    try:
        dataset = load_prepared(args.dataset)
        shutil.rmtree(dataset.root / CACHE_DIR, ignore_errors=True)
        started = time.perf_counter()
        loader = make_loader(dataset, "train", args.batch_size, train=True, seed=0)
        build_seconds = time.perf_counter() - started
        train = dataset.split_indices("train")
        print(f"dataset {dataset.root}: {len(train)} train images of {dataset.image_size} px, batch {args.batch_size}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"cache build (decode every image once): {build_seconds:.2f} s = {len(dataset.samples) / build_seconds:,.0f} images/s")

        cached_rates, per_item_rates = [], []
        rng = np.random.default_rng(0)
        for epoch in range(args.epochs):  # interleaved, so both see the same machine load
            loader.set_epoch(epoch)
            started = time.perf_counter()
            cached_rates.append(cached_epoch(loader) / (time.perf_counter() - started))
            order = [train[i] for i in rng.permutation(len(train))]
            started = time.perf_counter()
            per_item_rates.append(per_item_epoch(dataset, order, args.batch_size, rng) / (time.perf_counter() - started))
        spreads = []
        for name, rates in (("cached memory-mapped loader", cached_rates), ("per-item PIL JPEG decoding", per_item_rates)):
            spreads.append(spread(rates))
            print(f"{name:<28}: {statistics.median(rates):10,.0f} images/s (median of {len(rates)} epochs, spread "
                  f"{100 * spreads[-1]:.0f} %)")
        paired = statistics.median(c / p for c, p in zip(cached_rates, per_item_rates))
        print(f"ratio cached / per-item     : {paired:10.1f} x (median of the epochs' ratios)")
        if max(spreads) > SPREAD_WARNING:
            print(f"WARNING: spread above {100 * SPREAD_WARNING:.0f} % (a busy machine?): do not read these numbers as "
                  "results")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
