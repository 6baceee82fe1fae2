"""Shared fixtures. Nothing here depends on files left by a previous run: every artifact is
built in a pytest tmp dir, once per session where it is expensive."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MTEDGE_NO_PROGRESS", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

TESTS = Path(__file__).parent
if str(TESTS) not in sys.path:  # test doubles, architectures and helpers live under tests/, not in the package
    sys.path.insert(0, str(TESTS))

@pytest.fixture(scope="session")
def fashion_recipe():
    from toolchain import zoo
    from toolchain.recipe import load_recipe

    return load_recipe(zoo.get("fashion-mt").recipe_path)


@pytest.fixture(scope="session")
def tiny_trained_fashion(tmp_path_factory, fashion_recipe):
    """zoo:fashion-mt trained for a few seconds on 6,000 real images: better than chance on
    every task, cheap enough for every test session. Returns (checkpoint path, LoadedModel)."""
    from toolchain.model import load, save_checkpoint
    from toolchain.train import TrainConfig, train

    torch.manual_seed(0)
    loaded = load("zoo:fashion-mt")
    train(loaded.module, fashion_recipe, TrainConfig(epochs=2.0, limit=6000, batch_size=100, lr=5e-3))
    path = tmp_path_factory.mktemp("ckpt") / "fashion-tiny.pt"
    save_checkpoint(path, loaded.module, "zoo:fashion-mt", fashion_recipe)
    return path, load(str(path))


@pytest.fixture(scope="session")
def fashion_bundle(tmp_path_factory, tiny_trained_fashion, fashion_recipe):
    """A verified bundle of the tiny-trained fashion model (with per-task whole models)."""
    from toolchain.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "fashion-mt.mtb"
    export_bundle(tiny_trained_fashion[1], fashion_recipe, out, task_models=True)
    return out


@pytest.fixture(scope="session")
def mobilenet_bundle(tmp_path_factory):
    from toolchain.export import export_bundle
    from toolchain.model import load

    loaded = load("zoo:mobilenetv2-mt")
    out = tmp_path_factory.mktemp("bundles") / "mobilenetv2-mt.mtb"
    export_bundle(loaded, loaded.recipe, out, golden_samples=2)
    return out
