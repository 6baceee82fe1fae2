"""zoo:mobilenetv2-mt -- a realistic-size multitask network at 224x224 for latency work.

MobileNetV2 encoder (inverted residuals, width 1.0) with three heads:

- ``cls``   (classification, 100) from the last stage,
- ``seg``   (segmentation, 21)    DeepLabV3+-lite decoder: stride-32 features + stride-8 skip,
- ``depth`` (depth, 1)            decoder: stride-32 features + stride-16 skip.

Dense outputs are at stride 4 (56x56). The model is used untrained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), *([nn.ReLU6(inplace=True)] if act else []))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(*([conv_bn(cin, hidden, k=1)] if expand != 1 else []),
                                   conv_bn(hidden, hidden, stride=stride, groups=hidden),
                                   conv_bn(hidden, cout, k=1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


# (expansion, out channels, repeats, first stride) -- the MobileNetV2 paper's table 2
MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2Encoder(nn.Module):
    """Returns features at strides 8, 16 and 32 (32, 96 and 320 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 32, stride=2)
        blocks: list[nn.Module] = []
        cin = 32
        for t, c, n, s in MBV2_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        # split points: after 32-ch (stride 8), after 96-ch (stride 16), end (stride 32)
        self.stage8 = nn.Sequential(*blocks[:6])
        self.stage16 = nn.Sequential(*blocks[6:13])
        self.stage32 = nn.Sequential(*blocks[13:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s8 = self.stage8(self.stem(x))
        s16 = self.stage16(s8)
        s32 = self.stage32(s16)
        return s8, s16, s32


class DenseDecoder(nn.Module):
    """Two-stage decoder: deep features reduced, upsampled, fused with a skip, upsampled to stride 4."""

    def __init__(self, deep_ch: int, skip_ch: int, out_ch: int, mid: int = 128, skip_mid: int = 48) -> None:
        super().__init__()
        self.reduce = conv_bn(deep_ch, mid, k=1)
        self.skip = conv_bn(skip_ch, skip_mid, k=1)
        self.fuse = nn.Sequential(conv_bn(mid + skip_mid, mid), conv_bn(mid, mid))
        self.out = nn.Conv2d(mid, out_ch, 1)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor, out_size: int) -> torch.Tensor:
        y = F.interpolate(self.reduce(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([y, self.skip(skip)], dim=1))
        return F.interpolate(self.out(y), size=(out_size, out_size), mode="bilinear", align_corners=False)


class MobileNetV2MT(nn.Module):
    tasks = ("cls", "seg", "depth")

    def __init__(self, num_classes: int = 100, seg_classes: int = 21, image_size: int = 224) -> None:
        super().__init__()
        self.out_size = image_size // 4
        self.encoder = MobileNetV2Encoder()
        self.cls_head = nn.Sequential(conv_bn(320, 1280, k=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, num_classes))
        self.seg_head = DenseDecoder(320, 32, seg_classes)
        self.depth_head = DenseDecoder(320, 96, 1, mid=96, skip_mid=32)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s8, s16, s32 = self.encoder(x)
        return {"cls": self.cls_head(s32), "seg": self.seg_head(s32, s8, self.out_size),
                "depth": F.softplus(self.depth_head(s32, s16, self.out_size))}
