"""zoo:fashion-mt -- a compact multitask CNN for Fashion-MNIST (28x28, one channel).

One shared encoder (stem -> stage1 -> stage2) and four heads that branch at different depths:

- ``garment``     (classification, 10)  from the pooled stage2 features,
- ``group``       (classification, 4)   from the same pooled features plus its own layer,
- ``silhouette``  (segmentation, 2)     a decoder that reads stage2 and stage1 (skip),
- ``denoise``     (reconstruction, 1)   a decoder that reads stem and stage1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FashionEncoder(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = conv_bn_relu(1, w)  # 28x28
        self.stage1 = nn.Sequential(conv_bn_relu(w, 2 * w, stride=2), conv_bn_relu(2 * w, 2 * w))  # 14x14
        self.stage2 = nn.Sequential(conv_bn_relu(2 * w, 4 * w, stride=2), conv_bn_relu(4 * w, 4 * w))  # 7x7

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s0 = self.stem(x)
        s1 = self.stage1(s0)
        s2 = self.stage2(s1)
        return s0, s1, s2


class FashionMT(nn.Module):
    """forward(image [B,1,28,28], normalized) -> {task: tensor}."""

    tasks = ("garment", "group", "silhouette", "denoise")

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.encoder = FashionEncoder(w)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.garment_fc = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, 10))
        self.group_fc = nn.Sequential(nn.Linear(4 * w, 2 * w), nn.ReLU(inplace=True), nn.Linear(2 * w, 4))
        self.sil_reduce = conv_bn_relu(4 * w, 2 * w)
        self.sil_fuse = conv_bn_relu(4 * w, w)  # cat(stage2 reduced, stage1)
        self.sil_out = nn.Conv2d(w, 2, 1)
        self.dn_reduce = nn.Sequential(nn.Conv2d(2 * w, w // 2, 1, bias=False), nn.BatchNorm2d(w // 2), nn.ReLU(inplace=True))
        self.dn_fuse = conv_bn_relu(w + w // 2, w // 2)
        self.dn_out = nn.Conv2d(w // 2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s0, s1, s2 = self.encoder(x)
        pooled = torch.flatten(self.pool(s2), 1)
        # silhouette: stage2 up to 14x14, fused with stage1, then up to 28x28
        sil = F.interpolate(self.sil_reduce(s2), scale_factor=2.0, mode="nearest")
        sil = self.sil_fuse(torch.cat([sil, s1], dim=1))
        sil = self.sil_out(F.interpolate(sil, scale_factor=2.0, mode="bilinear", align_corners=False))
        # denoise: stage1 up to 28x28, fused with the stem
        dn = F.interpolate(self.dn_reduce(s1), scale_factor=2.0, mode="nearest")
        dn = torch.sigmoid(self.dn_out(self.dn_fuse(torch.cat([dn, s0], dim=1))))
        return {"garment": self.garment_fc(pooled), "group": self.group_fc(pooled), "silhouette": sil, "denoise": dn}
