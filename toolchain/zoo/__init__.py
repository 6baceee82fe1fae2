"""Reference models, addressed as `zoo:NAME`. Each comes with its default recipe."""

from __future__ import annotations

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


def _fashion_mt(**kw) -> nn.Module:
    from toolchain.zoo.fashion_mt import FashionMT

    return FashionMT(**kw)


def _mobilenetv2_mt(**kw) -> nn.Module:
    from toolchain.zoo.mobilenetv2_mt import MobileNetV2MT

    return MobileNetV2MT(**kw)


ZOO: dict[str, ZooEntry] = {
    "fashion-mt": ZooEntry(
        "fashion-mt",
        "compact CNN on Fashion-MNIST 28x28: garment, group, silhouette, denoise",
        _fashion_mt,
        RECIPES / "fashion-mt.yaml",
    ),
    "mobilenetv2-mt": ZooEntry(
        "mobilenetv2-mt",
        "MobileNetV2 encoder at 224x224: cls, seg, depth (skip connections); untrained",
        _mobilenetv2_mt,
        RECIPES / "mobilenetv2-mt.yaml",
    ),
}


def get(name: str) -> ZooEntry:
    if name not in ZOO:
        raise SpecError(f"unknown zoo model {name!r}; known: {', '.join('zoo:' + n for n in ZOO)}")
    return ZOO[name]
