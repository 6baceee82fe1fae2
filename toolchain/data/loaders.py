"""Batches for a recipe's data: (model input, targets or None) on named splits.

Splits: ``train``, ``val`` (held out from training; the oracle's split), ``test``, ``calib``.
Data without labels (photos, random, a user's unlabeled images) yields targets=None: callers
switch to label-free metrics. A user's data kinds (images, arrays, python) live in
toolchain/data/user.py; every image is normalized by toolchain/data/images.py.
"""

from __future__ import annotations

import zlib
from typing import Iterator

import numpy as np
import torch

from toolchain.errors import SpecError
from toolchain.recipe import Recipe

Batch = tuple[torch.Tensor, dict[str, torch.Tensor] | None]


def has_labels(recipe: Recipe) -> bool:
    if recipe.data.kind in ("images", "arrays", "python"):
        from toolchain.data.user import has_user_labels

        return has_user_labels(recipe)
    return recipe.data.kind == "fashion-mnist"


def batches(recipe: Recipe, split: str, count: int | None = None, batch_size: int = 256, seed: int = 0,
            shuffle: bool = False, augment: bool = False) -> Iterator[Batch]:
    """Deterministic batches of `split` (at most `count` samples). `shuffle` permutes a user's
    images/arrays with `seed` (for training); the built-in sources ignore it. `augment` (training)
    takes random views of a user's images where the recipe has ``data.augment``."""
    kind = recipe.data.kind
    if kind in ("images", "arrays", "python"):
        from toolchain.data import user

        if kind == "python":
            yield from user.python_batches(recipe, split, count)
        elif kind == "images":
            yield from user.images_batches(recipe, split, count, batch_size, shuffle, seed, augment)
        else:
            yield from user.arrays_batches(recipe, split, count, batch_size, shuffle=shuffle, seed=seed)
    elif kind == "fashion-mnist":
        yield from _fashion(recipe, split, count, batch_size, seed, shuffle)
    elif kind == "photos":
        yield from _photos(recipe, split, count, batch_size, seed)
    elif kind == "random":
        n = count or 64
        # zlib.crc32, not hash(): str hashes change from process to process (PYTHONHASHSEED)
        gen = torch.Generator().manual_seed(seed + zlib.crc32(split.encode()) % 1000)
        for start in range(0, n, batch_size):
            yield torch.randn((min(batch_size, n - start), *recipe.input.shape[1:]), generator=gen), None
    else:
        raise SpecError(f"data kind {kind!r} has no loader")


def _fashion(recipe: Recipe, split: str, count: int | None, batch_size: int, seed: int,
             shuffle: bool = False) -> Iterator[Batch]:
    from toolchain.data import fashion

    val_n = recipe.data.val_count
    if split in ("train", "val", "calib"):
        full = fashion.load_split("train")
        train_n = len(full) - val_n
        part = {"train": full.subset(train_n), "val": full.subset(val_n, offset=train_n),
                "calib": full.subset(recipe.data.calibration_count)}[split]
    elif split == "test":
        part = fashion.load_split("test")
    else:
        raise SpecError(f"unknown split {split!r}; expected train, val, test or calib")
    if count is not None:
        part = part.subset(count)
    # distinct noise seeds per split so val/test inputs never repeat training noise
    base = {"train": 1, "val": 2, "test": 3, "calib": 4}[split] + 10 * seed
    yield from fashion.iterate(part, batch_size, shuffle=shuffle, seed=base)


def _photos(recipe: Recipe, split: str, count: int | None, batch_size: int, seed: int) -> Iterator[Batch]:
    """Label-free: random crops/flips of scikit-image's photos at the recipe's input size."""
    from toolchain.data.images import normalize_for
    from toolchain.data.photos import load_photos

    size = recipe.input.shape[-1]
    photos = load_photos(2 * size)
    n = count or recipe.data.val_count
    rng = np.random.default_rng({"train": 11, "val": 12, "test": 13, "calib": 14}.get(split, 15) + 100 * seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = photos[i % len(photos)]
        crop = int(rng.integers(size, 2 * size + 1))
        y, x = rng.integers(0, 2 * size - crop + 1, size=2)
        idx = np.arange(size) * crop // size  # nearest-neighbour resize of the crop
        patch = img[y + idx][:, x + idx]
        out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
    x_all = torch.from_numpy(normalize_for(out, recipe.input))
    for start in range(0, n, batch_size):
        yield x_all[start : start + batch_size], None


def split_length(recipe: Recipe, split: str, count: int | None = None) -> int:
    """How many samples `batches(recipe, split, count)` yields, without decoding them where the
    source can tell (image folders, arrays, Fashion-MNIST)."""
    kind = recipe.data.kind
    if kind == "images":
        from toolchain.data.user import _image_split

        n = len(_image_split(recipe, split))
    elif kind == "arrays":
        from toolchain.data.user import _array_split

        n = len(_array_split(recipe, split)[2])
    elif kind == "fashion-mnist":
        n = {"val": recipe.data.val_count, "test": 10000, "calib": recipe.data.calibration_count}.get(
            split, 60000 - recipe.data.val_count)
    elif kind in ("photos", "random"):
        n = count or (recipe.data.val_count if kind == "photos" else 64)
    else:
        n = sum(len(x) for x, _ in batches(recipe, split, count=count))
    return min(n, count) if count is not None else n


def example_input(recipe: Recipe, batch: int = 1) -> torch.Tensor:
    """A real sample of the recipe's data in the export shape (falls back to noise for `random`)."""
    x, _ = next(batches(recipe, "test", count=batch, batch_size=batch))
    return x
