"""Recipe data as numpy arrays: images of a split and, when the data has labels, task targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from toolchain.data.loaders import batches, has_labels
from toolchain.errors import SpecError
from toolchain.recipe import Recipe


@dataclass
class SplitData:
    """`count` images of `split` ([N, C, H, W] float32, normalized) and their labels, if any."""

    split: str
    images: np.ndarray
    targets: dict[str, torch.Tensor] | None

    def __len__(self) -> int:
        return len(self.images)


def load_split(recipe: Recipe, split: str, count: int, tasks: list[str] | None = None, batch: int = 1) -> SplitData:
    """Load `count` samples of `split` (rounded down to a multiple of the export batch)."""
    if count < batch:
        raise SpecError(f"need at least {batch} {split} sample(s), got a count of {count}")
    count -= count % batch
    xs: list[torch.Tensor] = []
    ys: dict[str, list[torch.Tensor]] | None = {} if has_labels(recipe) else None
    for x, y in batches(recipe, split, count=count, batch_size=256):
        xs.append(x)
        if y is None:
            ys = None
        elif ys is not None:
            for t, v in y.items():
                if tasks is None or t in tasks:
                    ys.setdefault(t, []).append(v)
    if not xs:
        raise SpecError(f"recipe {recipe.name!r} data ({recipe.data.kind}) gave no {split} samples")
    images = torch.cat(xs).numpy().astype(np.float32)
    if tuple(images.shape[1:]) != tuple(recipe.input.shape[1:]):
        raise SpecError(f"{split} images have shape {list(images.shape[1:])}, the bundle input is "
                        f"{list(recipe.input.shape[1:])}: the recipe does not match the bundle")
    n = len(images) - len(images) % batch
    targets = {t: torch.cat(v)[:n] for t, v in ys.items()} if ys else None
    return SplitData(split, images[:n], targets)
