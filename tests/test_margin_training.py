"""Margin softmax (ArcFace/CosFace) as a config option, with gated models and the AIG loss unchanged."""

import pytest
from conftest import TINY_RUN
import torch

from facegraph import paper
from facegraph.cli import main
from facegraph.config import load_config
from facegraph.data import load_prepared
from facegraph.data.images import load_image_for_inference
from facegraph.engine.trained import load_trained
from facegraph.errors import ConfigError
from facegraph.models.heads import CosineClassifier
from facegraph.rundir import RunDir

TINY = TINY_RUN + ["train.epochs=2"]


def test_a_margin_config_builds_a_cosine_classifier_and_its_loss():
    config = load_config("cpu/cosface-aig-t0.5", TINY)
    model = paper.model_from_config(config, 7)
    assert isinstance(model.fc, CosineClassifier) and model.logit_scale == 30.0 and model.num_gates > 0
    weights = paper.loss_weights(config, [], model.num_gates)
    assert (weights.margin, weights.margin_m, weights.margin_scale) == ("cosface", 0.35, 30.0)
    assert weights.target_weight == 1.0  # the AIG loss is unchanged
    plain = paper.loss_weights(load_config("cpu/aig-t0.5", TINY), [], model.num_gates)
    assert plain.margin is None and not isinstance(paper.model_from_config(load_config("cpu/aig-t0.5"), 7).fc,
                                                   CosineClassifier)
    with pytest.raises(ConfigError, match="loss.margin must be none, arcface or cosface"):
        load_config("cpu/cosface", ["loss.margin=sphereface"])


@pytest.mark.parametrize("preset, margin", [("cpu/cosface", []), ("cpu/cosface-aig-t0.5", ["loss.margin=arcface"])])
def test_margin_runs_train_and_report_probabilities(data_synthetic_32px, tmp_path, preset, margin):
    run = tmp_path / "run"
    args = ["train", "--config", preset, "--data", str(data_synthetic_32px), "--out", str(run)]
    for assignment in [*TINY, *margin]:
        args += ["--set", assignment]
    assert main(args) == 0
    rows = RunDir(run).metrics()
    assert all(torch.isfinite(torch.tensor(row["train"]["cross_entropy"])) for row in rows)
    records = RunDir(run).image_records("test", {})
    # The confidence evaluate wrote is softmax(s * cosine), s = 30, not the softmax of the raw cosines.
    trained = load_trained(run)
    dataset = load_prepared(data_synthetic_32px)
    image = load_image_for_inference(dataset.root / records.path[0], trained.dataset)
    cosines, _ = trained.model.infer(image[None])
    assert float(cosines.abs().max()) <= 1.0
    expected = float((30.0 * cosines).softmax(dim=1).max())
    assert records.confidence[0] == pytest.approx(expected, abs=1e-3)
    assert abs(float(cosines.softmax(dim=1).max()) - expected) > 1e-3
