"""Reference models, addressed as `zoo:NAME`. Each comes with its default recipe."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from toolchain.errors import SpecError

RECIPES = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    factory: Callable[..., nn.Module]
    recipe_path: Path


def _lazy(module: str, cls: str) -> Callable[..., nn.Module]:
    """A factory that imports the model's module only when a model is made."""
    return lambda **kw: getattr(importlib.import_module(module), cls)(**kw)


ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("fashion-mt", "compact CNN on Fashion-MNIST 28x28: garment, group, silhouette, denoise",
             _lazy("toolchain.zoo.fashion_mt", "FashionMT"), RECIPES / "fashion-mt.yaml"),
    ZooEntry("mobilenetv2-mt", "MobileNetV2 encoder at 224x224: cls, seg, depth (skip connections); untrained",
             _lazy("toolchain.zoo.mobilenetv2_mt", "MobileNetV2MT"), RECIPES / "mobilenetv2-mt.yaml"),
)}


def get(name: str) -> ZooEntry:
    if name not in ZOO:
        raise SpecError(f"unknown zoo model {name!r}; known: {', '.join('zoo:' + n for n in ZOO)}")
    return ZOO[name]
