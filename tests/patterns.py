"""Model patterns users actually write (torchvision / timm idioms), one small network each.

Every pattern is a multitask network on 3x20x24 images (odd, non-square on purpose) whose outputs
are named by `OUTPUTS` when they are positional. tests/test_patterns.py runs each through
inspect, export + verify, compress (pagcp and l1) and runtime parity against onnxruntime.
"""

from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn

SHAPE = (1, 3, 20, 24)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SequentialSlicing(nn.Module):
    """`self.features[:2](x)` reads an inner stage (torchvision's segmentation backbones)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16), conv_bn(16, 24, 2), conv_bn(24, 32, 2), conv_bn(32, 32))
        self.cls = nn.Linear(32, 5)
        self.seg = nn.Conv2d(24, 3, 1)

    def forward(self, x):
        low = self.features[:2](x)
        high = self.features[2:](low)
        seg = F.interpolate(self.seg(low), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.cls(F.adaptive_avg_pool2d(high, 1).flatten(1)), seg


class IndexedStages(nn.Module):
    """`for i, stage in enumerate(self.stages)` with `self.stages[i]` and a list of taps."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([conv_bn(3, 8), conv_bn(8, 16, 2), conv_bn(16, 24, 2)])
        self.depth = nn.Sequential(nn.Conv2d(16 + 24, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 1, 1))
        self.cls = nn.Linear(24, 4)

    def forward(self, x):
        taps = []
        for i in range(len(self.stages)):
            x = self.stages[i](x)
            taps.append(x)
        up = F.interpolate(taps[2], size=taps[1].shape[-2:], mode="nearest")
        return [self.cls(taps[2].mean((2, 3))), self.depth(torch.cat([taps[1], up], 1))]


class SharedModuleTwice(nn.Module):
    """One block applied twice (weight sharing), residual `+=`, functional ReLU in place."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 2)
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.head_a = nn.Linear(16, 3)
        self.head_b = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        for _ in range(2):
            y = self.block(x)
            y += x
            x = F.relu(y, inplace=True)
        return {"a": self.head_a(x.mean((2, 3))), "b": self.head_b(x)}


Face = namedtuple("Face", ["score", "box", "landmarks"])


class NamedTupleHeads(nn.Module):
    """MTCNN-style: a namedtuple of a classification and two regression heads."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(3, 16, 2), conv_bn(16, 32, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(32, 64), nn.PReLU(64))
        self.score = nn.Linear(64, 2)
        self.box = nn.Linear(64, 4)
        self.landmarks = nn.Linear(64, 10)

    def forward(self, x):
        f = self.body(x)
        return Face(self.score(f), self.box(f), self.landmarks(f))


class NestedDictFlags(nn.Module):
    """Nested dict outputs, a configuration flag read in forward, a forward() flag with a default."""

    def __init__(self, with_aux: bool = False) -> None:
        super().__init__()
        self.with_aux = with_aux
        self.enc = nn.Sequential(conv_bn(3, 16, 2), conv_bn(16, 24, 2))
        self.cls = nn.Linear(24, 6)
        self.seg = nn.Conv2d(24, 4, 1)
        self.aux = nn.Conv2d(24, 1, 1)

    def forward(self, x, return_features: bool = False):
        f = self.enc(x)
        out = {"heads": {"cls": self.cls(f.mean((2, 3))),
                         "seg": F.interpolate(self.seg(f), scale_factor=4.0, mode="bilinear", align_corners=False)}}
        if self.with_aux:  # specialized away: the flag is a Python bool
            out["aux"] = self.aux(f)
        if return_features:
            out["features"] = f
        return out


class PermuteFlattenLinear(nn.Module):
    """Channels-last flatten into a Linear: `x.permute(0, 2, 3, 1).reshape(N, -1)`."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(conv_bn(3, 8, 2), conv_bn(8, 16, 2))
        self.fc = nn.Linear(16 * 5 * 6, 7)
        self.seg = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        f = self.enc(x)
        flat = f.permute(0, 2, 3, 1).reshape(f.shape[0], -1)
        return self.fc(flat), self.seg(f)


class SamePadConv(nn.Conv2d):
    """TensorFlow-style SAME padding in forward (EfficientNet ports, timm's Conv2dSame)."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        ph = max((-(-ih // self.stride[0]) - 1) * self.stride[0] + kh - ih, 0)
        pw = max((-(-iw // self.stride[1]) - 1) * self.stride[1] + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SubclassedLayers(nn.Module):
    """Layers subclassing nn.Conv2d with their own forward, and a depthwise-separable block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(SamePadConv(3, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(SamePadConv(16, 16, 3, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),
                                nn.Conv2d(16, 24, 1), nn.BatchNorm2d(24))
        self.cls = nn.Linear(24, 5)
        self.depth = SamePadConv(24, 1, 3)

    def forward(self, x):
        f = self.dw(self.stem(x))
        return {"cls": self.cls(f.mean((2, 3))), "depth": self.depth(f)}


PATTERNS: dict[str, tuple[type[nn.Module], dict[str, str], list[str] | None]] = {
    # name: (class, task kinds, recipe outputs for positional ones)
    "sequential_slicing": (SequentialSlicing, {"cls": "classification", "seg": "segmentation"}, ["cls", "seg"]),
    "indexed_stages": (IndexedStages, {"cls": "classification", "depth": "depth"}, ["cls", "depth"]),
    "shared_module_twice": (SharedModuleTwice, {"a": "classification", "b": "segmentation"}, None),
    "namedtuple_heads": (NamedTupleHeads, {"score": "classification", "box": "regression", "landmarks": "keypoints"}, None),
    "nested_dict_flags": (NestedDictFlags, {"heads.cls": "classification", "heads.seg": "segmentation"}, None),
    "subclassed_layers": (SubclassedLayers, {"cls": "classification", "depth": "depth"}, None),
    "permute_flatten_linear": (PermuteFlattenLinear, {"fc": "classification", "seg": "segmentation"}, ["fc", "seg"]),
}


def recipe_doc(name: str) -> dict:
    cls, kinds, outputs = PATTERNS[name]
    doc = {
        "name": name,
        "input": {"shape": list(SHAPE), "normalization": {"scale": 1 / 255, "mean": [0.5], "std": [0.25]}},
        "data": {"kind": "random", "val_count": 16, "calibration_count": 8},
        "tasks": {t: {"kind": k, "allowed_drop": 50.0 if k in ("classification", "segmentation") else 1.0}
                  for t, k in kinds.items()},
    }
    if outputs:
        doc["outputs"] = outputs
    return doc
