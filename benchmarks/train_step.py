"""Training-step throughput on the CPU preset: images/s and the fraction of step time spent waiting for data.

Compares fp32 and bf16 autocast, with and without channels_last, side by side in one run, on the real cached loader
(LFW prepared at 64 px), so the CPU defaults in the cpu/ presets rest on a measurement. The four settings take their
steps in turn (a busy moment slows all alike): medians per image, the spread, a warning above 10 %, and each setting
against fp32 NCHW as the median over rounds of the two steps' ratio.

    python benchmarks/train_step.py [--data PREPARED_DIR] [--steps 20] [--config cpu/aig-t0.5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from facegraph.data import Selection, load_prepared, make_loader, prepare_lfw
from facegraph.config import load_config
from facegraph.paper import model_from_config
from facegraph.graphs import training_loss
from facegraph.models import autocast

from spread import SPREAD_WARNING, spread

REPO = Path(__file__).resolve().parents[1]


SETTINGS = [(precision, channels_last) for precision in ("fp32", "bf16") for channels_last in (False, True)]


class Trainer:
    """One setting's model, optimizer and loader, stepped one batch at a time so that settings interleave."""

    def __init__(self, config, dataset, precision: str, channels_last: bool) -> None:
        torch.manual_seed(0)
        self.model = model_from_config(config, dataset.num_identities)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.loader = make_loader(dataset, "train", config.train.batch_size, train=True, seed=0)
        self.batches = iter(self.loader)
        self.targets = self.model.gated_target_rates()
        self.precision, self.channels_last = precision, channels_last

    def step(self) -> tuple[float, float, int]:
        """Seconds of one training step, the seconds of it spent waiting for the batch, and the batch's images."""
        started = time.perf_counter()
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        waited = time.perf_counter() - started
        inputs = batch.images.contiguous(memory_format=torch.channels_last) if self.channels_last else batch.images
        with autocast(self.precision, "cpu"):
            logits, gate_values = self.model(inputs)
        loss = training_loss(logits.float(), batch.identities, gate_values.float(), self.targets).total
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - started, waited, len(batch.identities)


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
        trainers = {setting: Trainer(config, dataset, *setting) for setting in SETTINGS}
        times = {setting: [] for setting in SETTINGS}  # seconds per image of each step
        waits = {setting: 0.0 for setting in SETTINGS}
        spent = {setting: 0.0 for setting in SETTINGS}
        for step in range(args.steps + 2):  # steps interleaved across the settings; two warm-up steps each
            for setting, trainer in trainers.items():
                seconds, waited, images = trainer.step()
                if step >= 2:
                    times[setting].append(seconds / images)
                    waits[setting] += waited
                    spent[setting] += seconds
        baseline = times["fp32", False]
        print("| precision | channels_last | images/s (median step) | data wait | spread | vs fp32 NCHW (median of "
              "paired steps) |")
        print("|---|---|---:|---:|---:|---:|")
        noisy = False
        for (precision, channels_last), per_image in times.items():
            median = statistics.median(per_image)
            scatter = spread(per_image)
            noisy |= scatter > SPREAD_WARNING
            paired = statistics.median(b / t for b, t in zip(baseline, per_image))
            wait = waits[precision, channels_last] / spent[precision, channels_last]
            print(f"| {precision} | {channels_last} | {1 / median:.0f} | {100 * wait:.1f} % | {100 * scatter:.0f} %"
                  f"{' !' if scatter > SPREAD_WARNING else ''} | {paired:.2f}x |")
        if noisy:
            print(f"WARNING: rows marked ! have a spread above {100 * SPREAD_WARNING:.0f} % (a busy machine?): do not "
                  "read them as results")


if __name__ == "__main__":
    main()
