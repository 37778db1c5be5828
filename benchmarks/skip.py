"""Dense vs skipping inference, measured side by side in one run.

For ResNet-50 (width 1.0 and 0.25) at 64 px, batch 64 and 1, per-block open rates 0.4 and 0.7, fp32 and bf16
autocast, prints the measured speedup of skipping over the dense masked computation, the speedup that the MACs
predict, and their ratio (1.0 = skipping saves exactly the compute it removes).

Every block is gated; each gate computes its relevance as usual, then replays a fixed random decision pattern with
the requested open rate, so that both paths take exactly the same inference graph.

    python benchmarks/skip.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from facegraph.flops import cost_table
from facegraph.models import GatedResNet, build_model, num_blocks


def replay_gates(model: GatedResNet, pattern: torch.Tensor) -> None:
    for column, gate in enumerate(model.gates.values()):
        def forward(x, temperature=1.0, sample=None, gate=gate, column=column):
            gate.relevance(x)  # pay for the gate as a real one would
            return pattern[: x.shape[0], column]
        gate.forward = forward


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved_seconds(first, second, repeats: int) -> tuple[float, float]:
    """Median times of two runs measured alternately, so that drifting machine load hits both alike."""
    first(), second()  # warm-up
    pairs = [(timed(first), timed(second)) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def measure(width: float, batch: int, rate: float, precision: str, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model("resnet50", 100, width=width, target_rates=[0.5] * num_blocks("resnet50"))
    table = cost_table(model, 64)
    model.eval()
    images = torch.randn(64, 3, 64, 64)
    patterns = (torch.rand(64, model.num_gates) < rate).float()
    chunks = [(images[i:i + batch], patterns[i:i + batch]) for i in range(0, 64, batch)]

    def run(skip: bool) -> None:
        for chunk, pattern in chunks:
            replay_gates(model, pattern)
            model.infer(chunk, skip=skip, precision=precision)

    dense, skipping = interleaved_seconds(lambda: run(False), lambda: run(True), repeats)
    predicted = table.dense_macs() / float(table.per_image_macs(patterns).mean())
    return dense / skipping, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="batch 64, fp32 only")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ResNet-50 at 64 px, 64 images per case")
    print(f"{'width':>5} {'batch':>5} {'rate':>4} {'precision':>9} {'measured':>9} {'predicted':>9} {'ratio':>6}")
    for precision in ("fp32",) if args.quick else ("fp32", "bf16"):
        for width in (1.0, 0.25):
            for batch in (64,) if args.quick else (64, 1):
                for rate in (0.4, 0.7):
                    measured, predicted = measure(width, batch, rate, precision, args.repeats)
                    print(f"{width:5.2f} {batch:5d} {rate:4.1f} {precision:>9} {measured:8.2f}x {predicted:8.2f}x "
                          f"{measured / predicted:6.2f}", flush=True)


if __name__ == "__main__":
    main()
