"""Training-step throughput on the CPU preset: images/s and the fraction of step time spent waiting for data.

Compares fp32 and bf16 autocast, with and without channels_last, side by side in one run, on the real cached loader
(LFW prepared at 64 px), so the CPU defaults in the cpu/ presets rest on a measurement.

    python benchmarks/train_step.py [--data PREPARED_DIR] [--steps 20] [--config cpu/aig-t0.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from facegraph.data import Selection, load_prepared, make_loader, prepare_lfw
from facegraph.config import load_config
from facegraph.paper import model_from_config
from facegraph.graphs import training_loss
from facegraph.models import autocast

REPO = Path(__file__).resolve().parents[1]


def measure(config, dataset, steps: int, precision: str, channels_last: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    model = model_from_config(config, dataset.num_identities)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = make_loader(dataset, "train", config.train.batch_size, train=True, seed=0)
    targets = model.gated_target_rates()
    batches = iter(loader)
    waited = images = 0.0
    started = None
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            started, waited, images = time.perf_counter(), 0.0, 0
        before = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        waited += time.perf_counter() - before
        inputs = batch.images.contiguous(memory_format=torch.channels_last) if channels_last else batch.images
        with autocast(precision, "cpu"):
            logits, gate_values = model(inputs)
        loss = training_loss(logits.float(), batch.identities, gate_values.float(), targets).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += len(batch.identities)
    elapsed = time.perf_counter() - started
    return images / elapsed, waited / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="prepared dataset at 64 px (default: prepare LFW from $FACEGRAPH_DATA)")
    parser.add_argument("--config", default="cpu/aig-t0.5")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "lfw"
            prepare_lfw(data, Selection(image_size=config.model.image_size, min_images=10,
                                        split={"train": 0.8, "val": 0.1, "test": 0.1}))
        dataset = load_prepared(data)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {config.model.arch} width "
              f"{config.model.width} at {dataset.image_size} px, {config.model.variant}, batch {config.train.batch_size}")
        print(f"{'precision':>9} {'channels_last':>13} {'images/s':>9} {'data wait':>9}")
        results = {}
        for precision in ("fp32", "bf16"):
            for channels_last in (False, True):
                speed, wait = measure(config, dataset, args.steps, precision, channels_last)
                results[precision, channels_last] = speed
                print(f"{precision:>9} {str(channels_last):>13} {speed:9.0f} {100 * wait:8.1f}%", flush=True)
        baseline = results["fp32", False]
        print("speed vs fp32 NCHW: " + ", ".join(f"{p}{' + channels_last' if c else ''} {s / baseline:.2f}x"
                                                  for (p, c), s in results.items()))


if __name__ == "__main__":
    main()
