"""The built-in trainer on real data, and `mtedge train`."""

import json

import torch

from cli_helpers import mtedge
from toolchain.model import load
from toolchain.train import evaluate_on_test


def test_tiny_training_beats_the_untrained_model_on_every_task(tiny_trained_fashion, fashion_recipe):
    _, trained = tiny_trained_fashion
    torch.manual_seed(0)
    before = evaluate_on_test(load("zoo:fashion-mt").module, fashion_recipe, count=1000)
    after = evaluate_on_test(trained.module, fashion_recipe, count=1000)
    assert after["garment"] > 60 and after["garment"] > before["garment"] + 30
    assert after["group"] > 80
    assert after["silhouette"] > before["silhouette"] + 10
    assert after["denoise"] > before["denoise"] + 3


def test_cli_train_writes_a_loadable_checkpoint_and_json(tmp_path):
    ckpt, js = tmp_path / "c.pt", tmp_path / "m.json"
    out = mtedge("train", "zoo:fashion-mt", "-o", ckpt, "--epochs", "1", "--limit", "600", "--test-count", "500",
                 "--json", js)
    doc = json.loads(js.read_text())
    assert set(doc["test_metrics"]) == {"garment", "group", "silhouette", "denoise"}
    assert "garment" in out.stdout and "accuracy" in out.stdout
    m = load(str(ckpt))
    assert m.origin == "zoo:fashion-mt" and m.meta["metrics"] == doc["test_metrics"]
