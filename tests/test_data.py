"""Fashion-MNIST from Debian's package, and the targets of the four fashion-mt tasks."""

import gzip
import struct

import numpy as np
import pytest
import torch

from toolchain.data import fashion
from toolchain.data.loaders import batches
from toolchain.errors import SpecError


def test_real_fashion_mnist_splits():
    train, test = fashion.load_split("train"), fashion.load_split("test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert set(np.unique(test.labels)) == set(range(10))
    assert np.bincount(test.labels).tolist() == [1000] * 10  # the published balanced test split


def test_task_targets():
    split = fashion.load_split("test").subset(64)
    x, t = fashion.make_batch(split.images, split.labels, seed=5)
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(t["group"], torch.from_numpy(fashion.GROUP_OF[split.labels]))
    clean = torch.tensor(split.images, dtype=torch.float32) / 255  # the split is read-only: copy
    assert torch.equal(t["silhouette"].bool(), clean > fashion.SILHOUETTE_THRESHOLD)
    assert torch.allclose(t["denoise"][:, 0], clean)
    # evaluation noise is deterministic, and the input really is noisy
    x2, _ = fashion.make_batch(split.images, split.labels, seed=5)
    assert torch.equal(x, x2)
    assert (fashion.normalize(t["denoise"]) - x).abs().mean() > 0.05


def test_val_is_held_out_from_train(fashion_recipe):
    val_x = next(batches(fashion_recipe, "val", count=8, batch_size=8))[1]["garment"]
    full = fashion.load_split("train")
    n = len(full) - fashion_recipe.data.val_count
    assert torch.equal(val_x, torch.from_numpy(full.labels[n : n + 8]))


def test_corrupt_and_missing_idx_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MTEDGE_FASHION_DIR", str(tmp_path))
    with pytest.raises(SpecError, match="dataset-fashion-mnist"):
        fashion.load_split("test")
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 10, 28, 28) + b"\0" * 100)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 10) + b"\0" * 10)
    with pytest.raises(SpecError, match="truncated"):
        fashion.load_split("test")
    with pytest.raises(SpecError, match="unknown Fashion-MNIST split 'validation'"):
        fashion.load_split("validation")


def test_random_data_is_the_same_in_every_process():
    """`random` recipes (test networks) must give the same batches run after run: a fresh
    interpreter, with its own str-hash seed, draws the same calibration samples."""
    import os
    import subprocess
    import sys

    code = ("from toolchain.recipe import parse_recipe; from toolchain.data.loaders import batches; "
            "r = parse_recipe({'name': 'r', 'input': {'shape': [1, 3, 4, 4]}, 'data': {'kind': 'random'}, "
            "'tasks': {'a': {'kind': 'depth', 'allowed_drop': 1.0}}}); "
            "print(float(next(batches(r, 'calib', count=2))[0].sum()))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(runs) == 1, runs
