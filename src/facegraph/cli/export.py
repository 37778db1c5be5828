"""`facegraph export`: what a user shares of a trained run: weights only, TorchScript or ONNX, with its preprocessing."""

from __future__ import annotations

import argparse

from facegraph.cli import add_subcommand

FORMATS = ("state-dict", "torchscript", "onnx")
EXAMPLES = """  facegraph export runs/iig --out shared/iig                          # weights only + config + preprocessing
  facegraph export runs/iig --out shared/iig-ts --format torchscript   # torch.jit.load-able, no facegraph needed
  facegraph export runs/iig --out shared/iig-onnx --format onnx        # needs: pip install 'facegraph[onnx]'
  python -c "import facegraph; print(facegraph.load('shared/iig').identities)"
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "export",
                            "Write the run's model with its config, preprocessing (dataset.json: image size, crop, "
                            "mean, std) and identity names into a new folder. state-dict: weights only (no optimizer "
                            "state; torch.load(..., weights_only=True)), a folder facegraph.load and `facegraph "
                            "predict` accept as a run. torchscript and onnx: the fused inference graph (BatchNorm "
                            "folded, NCHW) traced in dense mode, gates applied by masking (every block runs; same "
                            "logits and gates as skipping), in fp32 whatever precision the run infers in (a warning "
                            "says when they differ); it outputs logits and gate values, not embeddings. "
                            "export.json describes what was written.", EXAMPLES)
    parser.add_argument("run_dir", metavar="RUN", help="run directory written by `facegraph train`")
    parser.add_argument("--out", required=True, metavar="DIR", help="new (or empty) folder to write the export into")
    parser.add_argument("--format", choices=FORMATS, default="state-dict", help="what to write")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="weights to export")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facegraph.api import export

    description = export(args.run_dir, args.out, format=args.format, checkpoint=args.checkpoint)
    model_file = description.get("weights") or description.get("model")
    print(f"exported {args.run_dir} ({description['checkpoint']} checkpoint) as {args.format} to {args.out}: "
          f"{model_file}, config.json, dataset.json, export.json")
    if "execution" in description:
        print(f"  execution: {description['execution']}")
        scale = "" if description["classifier"] == "linear" else \
            f" (cosines: probabilities softmax({description['logit_scale']:g} x logits))"
        print(f"  outputs: logits{scale} and gate values, not embeddings; computed in {description['precision']}, "
              f"the run infers in {description['run_precision']}")
    print(f"  input: (B, 3, {description['image_size']}, {description['image_size']}) images preprocessed as "
          f"dataset.json says; {description['num_classes']} identities")
    return 0
