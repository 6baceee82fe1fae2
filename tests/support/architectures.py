"""Multitask test networks named after the graph shapes they exercise.

Each class takes an image batch [B, 3, H, W] and returns {task: tensor}; sizes are small and
odd on purpose (ncnn-style: odd shapes catch off-by-one layout bugs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class BranchesAtDifferentDepths(nn.Module):
    """Three heads leave the encoder after stage 1, 2 and 3."""

    def __init__(self) -> None:
        super().__init__()
        self.s1, self.s2, self.s3 = cbr(3, 8, 2), cbr(8, 12, 2), cbr(12, 16, 2)
        self.early = nn.Conv2d(8, 2, 1)
        self.middle = nn.Sequential(cbr(12, 12), nn.Conv2d(12, 1, 1))
        self.late = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x):
        a = self.s1(x)
        b = self.s2(a)
        c = self.s3(b)
        return {"early": self.early(a), "middle": self.middle(b), "late": self.late(c)}


class HeadConcatenatesTwoStages(nn.Module):
    """A dense head upsamples stage 3 and concatenates it with stage 2; a classifier reads stage 3."""

    def __init__(self) -> None:
        super().__init__()
        self.s1, self.s2, self.s3 = cbr(3, 8, 2), cbr(8, 16, 2), cbr(16, 24, 2)
        self.fuse = cbr(24 + 16, 16)
        self.seg = nn.Conv2d(16, 3, 1)
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 4))

    def forward(self, x):
        s2 = self.s2(self.s1(x))
        s3 = self.s3(s2)
        up = F.interpolate(s3, size=s2.shape[-2:], mode="nearest")
        return {"seg": self.seg(self.fuse(torch.cat([up, s2], 1))), "cls": self.cls(s3)}


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNetFPNTwoHeads(nn.Module):
    """ResNet-style encoder, an FPN-style neck shared by a segmentation and a depth head,
    and a classifier reading the encoder directly."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16, 2)
        self.l1, self.l2, self.l3 = BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 48, 2)
        self.lat1, self.lat2, self.lat3 = nn.Conv2d(16, 24, 1), nn.Conv2d(32, 24, 1), nn.Conv2d(48, 24, 1)
        self.smooth = cbr(24, 24)
        self.seg = nn.Conv2d(24, 5, 1)
        self.depth = nn.Sequential(cbr(24, 8), nn.Conv2d(8, 1, 1))
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 6))

    def forward(self, x):
        c1 = self.l1(self.stem(x))
        c2 = self.l2(c1)
        c3 = self.l3(c2)
        p3 = self.lat3(c3)
        p2 = self.lat2(c2) + F.interpolate(p3, size=c2.shape[-2:], mode="nearest")
        p1 = self.lat1(c1) + F.interpolate(p2, size=c1.shape[-2:], mode="nearest")
        neck = self.smooth(p1)
        return {"seg": self.seg(neck), "depth": self.depth(neck), "cls": self.cls(c3)}


class SingleLayerBranch(nn.Module):
    """One task's branch is a single 1x1 convolution on the shared features."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(cbr(3, 8, 2), cbr(8, 16, 2))
        self.edge = nn.Conv2d(16, 1, 1)
        self.cls = nn.Sequential(cbr(16, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        f = self.enc(x)
        return {"edge": self.edge(f), "cls": self.cls(f)}


class HeadSizedByAnotherStage(nn.Module):
    """A dense head reads stage 1 only for its spatial size (`size=s1.shape[-2:]`): after
    constant folding the ONNX file of that head no longer has stage 1 as an input."""

    def __init__(self) -> None:
        super().__init__()
        self.s1, self.s2 = cbr(3, 8, 2), cbr(8, 16, 2)
        self.seg = nn.Conv2d(16, 3, 1)
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, x):
        s1 = self.s1(x)
        s2 = self.s2(s1)
        seg = F.interpolate(self.seg(s2), size=s1.shape[-2:], mode="bilinear", align_corners=False)
        return {"seg": seg, "cls": self.cls(s2)}


EXPORT_SHAPES = {
    "branches_at_different_depths": BranchesAtDifferentDepths,
    "head_concatenates_two_stages": HeadConcatenatesTwoStages,
    "resnet_fpn_neck_shared_by_two_heads": ResNetFPNTwoHeads,
    "single_layer_branch": SingleLayerBranch,
    "head_sized_by_another_stage": HeadSizedByAnotherStage,
}


def recipe_for(model: nn.Module, shape: tuple[int, ...] = (1, 3, 37, 45)):
    """A label-free recipe (random data) for a test network: tasks inferred from one forward."""
    from toolchain.recipe import parse_recipe

    with torch.no_grad():
        out = model.eval()(torch.zeros(shape))
    tasks = {}
    for t, y in out.items():
        kind = "classification" if y.dim() == 2 else ("segmentation" if y.shape[1] > 1 else "depth")
        tasks[t] = {"kind": kind, "allowed_drop": 2.0}
    return parse_recipe({"name": type(model).__name__.lower(), "input": {"shape": list(shape)},
                         "data": {"kind": "random", "val_count": 16, "calibration_count": 16}, "tasks": tasks})
