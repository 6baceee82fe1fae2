"""Multitask test networks that move channels around (issue 8: exact pruning through layout ops).

Each class is small, has odd sizes on purpose (off-by-one and stride bugs in an index mapping
show up as wrong channels instead of hiding behind powers of two), returns ``{task: tensor}``
with two heads, and declares the input shape it is built for in ``input_shape`` (the flatten
models have a Linear whose width depends on it). Every forward is ``torch.fx``-traceable
(``toolchain.prune.groups.output_layers`` traces it).

``LAYOUT_MODELS`` maps a case name to its class; the exactness tests run every prunable group of
every one of them (tests/test_exactness.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin: int, cout: int, stride: int = 1, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _Heads(nn.Module):
    """Shared helper: a pooled classifier and a 1x1 dense head on the same features."""

    def __init__(self, ch: int, classes: int = 3, dense: int = 2) -> None:
        super().__init__()
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, classes))
        self.seg = nn.Conv2d(ch, dense, 1)

    def forward(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cls": self.cls(y), "seg": self.seg(y)}


class _LayersThenHeads(nn.Module):
    """The frame most layout cases share: their own layers (keyword arguments, in order), then
    `heads` on the last layer's `ch` channels. Heads are built last, as each case used to build
    them, so every case's random initialization is unchanged."""

    def __init__(self, ch: int, **layers: nn.Module) -> None:
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.heads = _Heads(ch)


class FlattenChannelMajor(nn.Module):
    """conv -> NCHW flatten (``view(b, -1)``: feature index = c*H*W + h*W + w) -> Linear."""

    input_shape = (2, 3, 11, 9)

    def __init__(self) -> None:
        super().__init__()
        self.s1 = cbr(3, 7, 2)  # 6x5
        self.s2 = cbr(7, 5, 2)  # 3x3
        self.fc = nn.Linear(5 * 3 * 3, 9)  # 5 channels x 3 x 3, in either flatten order
        self.cls = nn.Linear(9, 4)
        self.seg = nn.Conv2d(7, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.s1(x)
        b = self.s2(a)
        f = F.relu(self.fc(self.flatten(b)))
        return {"cls": self.cls(f), "seg": self.seg(a)}

    def flatten(self, b: torch.Tensor) -> torch.Tensor:
        return b.view(b.size(0), -1)


class FlattenChannelsLast(FlattenChannelMajor):
    """conv -> permute to NHWC -> flatten (feature index = h*W*C + w*C + c) -> Linear.

    A mapping that assumes channel-major flatten removes the wrong Linear inputs here."""

    def flatten(self, b: torch.Tensor) -> torch.Tensor:
        return torch.flatten(b.permute(0, 2, 3, 1), 1)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's shuffle: view [B, g, C/g, H, W] -> transpose(1, 2) -> view [B, C, H, W]."""
    b, c, h, w = x.size(0), x.size(1), x.size(2), x.size(3)
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ChannelShuffle(_LayersThenHeads):
    """conv (15 ch) -> channel shuffle (3 groups) -> conv; the classifier reads the shuffled features."""

    input_shape = (2, 3, 13, 11)

    def __init__(self) -> None:
        super().__init__(9, s1=cbr(3, 15, 2), s2=cbr(15, 9))
        self.side = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(15, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = channel_shuffle(self.s1(x), 3)
        y = self.s2(s)
        return {"cls": self.heads.cls(y) + self.side(s), "seg": self.heads.seg(y)}


class PixelShuffleUp(nn.Module):
    """conv (5*r^2 ch) -> nn.PixelShuffle(r=2) -> 5 ch at twice the resolution -> dense head.

    Output channel c of the shuffle is built from input channels c*4 .. c*4+3: only whole blocks
    of 4 can be removed, and the consumer loses input c."""

    input_shape = (2, 3, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.s1 = cbr(3, 7, 2)  # 5x6
        self.up = nn.Conv2d(7, 5 * 4, 3, 1, 1)
        self.ps = nn.PixelShuffle(2)  # 20 ch 5x6 -> 5 ch 10x12
        self.refine = cbr(5, 6)
        self.seg = nn.Conv2d(6, 3, 1)
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(7, 4))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.s1(x)
        y = self.refine(F.relu(self.ps(self.up(a))))
        return {"seg": self.seg(y), "cls": self.cls(a)}


class SplitConcatReordered(_LayersThenHeads):
    """conv -> chunk(2) and an uneven split -> concatenated back in another order -> conv."""

    input_shape = (2, 3, 11, 13)

    def __init__(self) -> None:
        super().__init__(9, s1=cbr(3, 10, 2), s2=cbr(10, 11), fuse=cbr(10 + 11, 9))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.s1(x)
        lo, hi = torch.chunk(a, 2, dim=1)  # 5 + 5
        b = self.s2(torch.cat([hi, lo], dim=1))  # halves swapped
        p, q = torch.split(b, [4, 7], dim=1)
        return self.heads(self.fuse(torch.cat([q, a, p], dim=1)))  # uneven parts reordered around another tensor


class GroupedDepthwise(_LayersThenHeads):
    """conv -> grouped conv (groups=3) -> depthwise conv -> pointwise conv (ResNeXt/MobileNet)."""

    input_shape = (2, 3, 11, 9)

    def __init__(self) -> None:
        super().__init__(7, s1=cbr(3, 12, 2), grouped=cbr(12, 15, groups=3), dw=cbr(15, 15, k=3, groups=15),
                         pw=cbr(15, 7, k=1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.pw(self.dw(self.grouped(self.s1(x)))))


class SqueezeExcite(_LayersThenHeads):
    """conv -> squeeze-excitation (pool, fc, ReLU, fc, sigmoid gate, multiply) -> heads.

    The gate's sigmoid(0) = 0.5 != 0, but it multiplies the (dead) feature channel, so the
    product is still 0 as long as the feature's producer is dead too."""

    input_shape = (2, 3, 13, 11)

    def __init__(self) -> None:
        super().__init__(9, s1=cbr(3, 11, 2), fc1=nn.Conv2d(11, 5, 1), fc2=nn.Conv2d(5, 11, 1), s2=cbr(11, 9))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.s1(x)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(a, 1)))))
        return self.heads(self.s2(a * gate))


class PReLUPerChannel(_LayersThenHeads):
    """conv -> BN -> PReLU with one slope per channel (the slope vector must shrink with the channels)."""

    input_shape = (2, 3, 9, 13)

    def __init__(self) -> None:
        super().__init__(7, conv=nn.Conv2d(3, 9, 3, 2, 1, bias=False), bn=nn.BatchNorm2d(9), act=nn.PReLU(9),
                         s2=nn.Sequential(nn.Conv2d(9, 7, 3, 1, 1), nn.PReLU(7)))
        with torch.no_grad():  # distinct slopes, so a misaligned slope vector changes the outputs
            self.act.weight.copy_(torch.linspace(0.05, 0.45, 9))
            self.s2[1].weight.copy_(torch.linspace(-0.3, 0.3, 7))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.s2(self.act(self.bn(self.conv(x)))))


class SharedLayerFeedsEveryHead(nn.Module):
    """One layer's output is read by three task heads (two dense, one classifier)."""

    input_shape = (2, 3, 11, 11)

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(cbr(3, 6, 2), cbr(6, 13))
        self.seg = nn.Conv2d(13, 3, 1)
        self.depth = nn.Sequential(cbr(13, 5), nn.Conv2d(5, 1, 3, 1, 1))
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(13, 4))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.enc(x)
        return {"seg": self.seg(f), "depth": self.depth(f), "cls": self.cls(f)}


class HeadReadsTwoStages(nn.Module):
    """A dense head adds a projected stage 1 to an upsampled stage 2 (FPN-style) and concatenates
    stage 1 again; the classifier reads stage 2."""

    input_shape = (2, 3, 13, 15)

    def __init__(self) -> None:
        super().__init__()
        self.s1, self.s2 = cbr(3, 7, 2), cbr(7, 11, 2)
        self.lat1, self.lat2 = nn.Conv2d(7, 6, 1), nn.Conv2d(11, 6, 1)
        self.fuse = cbr(6 + 7, 5)
        self.seg = nn.Conv2d(5, 2, 1)
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(11, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.s1(x)
        b = self.s2(a)
        p = self.lat1(a) + F.interpolate(self.lat2(b), size=(a.size(2), a.size(3)), mode="nearest")
        return {"seg": self.seg(self.fuse(torch.cat([p, a], dim=1))), "cls": self.cls(b)}


class SigmoidBetween(_LayersThenHeads):
    """A BN-free conv followed by sigmoid (f(0) = 0.5 != 0) before the next conv: zeroing the
    producer leaves a constant 0.5 channel, so 'dead' must be made by saturation instead."""

    input_shape = (2, 3, 9, 11)

    def __init__(self) -> None:
        super().__init__(7, s1=nn.Conv2d(3, 8, 3, 2, 1), s2=cbr(8, 7))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.s2(torch.sigmoid(self.s1(x))))


LAYOUT_MODELS: dict[str, type[nn.Module]] = {
    "flatten_channel_major": FlattenChannelMajor,
    "flatten_channels_last": FlattenChannelsLast,
    "channel_shuffle": ChannelShuffle,
    "pixel_shuffle": PixelShuffleUp,
    "split_concat_reordered": SplitConcatReordered,
    "grouped_and_depthwise": GroupedDepthwise,
    "squeeze_excite": SqueezeExcite,
    "prelu_per_channel": PReLUPerChannel,
    "shared_layer_feeds_every_head": SharedLayerFeedsEveryHead,
    "head_reads_two_stages": HeadReadsTwoStages,
    "sigmoid_between": SigmoidBetween,
}


# --- random small multitask architectures (the hypothesis property test draws their specs) --------

ACTIVATIONS = ("relu", "hardswish", "silu", "prelu", "sigmoid")


@dataclass(frozen=True)
class RandomBlock:
    """One encoder block: ``plain`` conv-BN-act, ``residual`` (two convs + shortcut, act after
    the add), or ``concat`` (two branches concatenated, in either order)."""

    kind: str
    width: int
    k: int = 3
    stride: int = 1
    act: str = "relu"
    swap: bool = False


@dataclass(frozen=True)
class RandomHead:
    """``cls`` (pool, Linear, act, Linear), ``dense`` (1x1 conv) or ``fuse`` (upsample the deeper
    of two taps to the other's size, concatenate, conv, 1x1 conv)."""

    kind: str
    tap: int
    tap2: int = 0
    out: int = 3


def _act(name: str, ch: int) -> nn.Module:
    return {"relu": nn.ReLU, "hardswish": nn.Hardswish, "silu": nn.SiLU, "sigmoid": nn.Sigmoid}[name]() \
        if name != "prelu" else nn.PReLU(ch, init=0.2)


class _RandomBlockModule(nn.Module):
    def __init__(self, spec: RandomBlock, cin: int) -> None:
        super().__init__()
        s, w = spec, spec.width
        self.kind, self.swap = s.kind, s.swap
        if s.kind == "plain":
            self.a = nn.Sequential(nn.Conv2d(cin, w, s.k, s.stride, s.k // 2, bias=False), nn.BatchNorm2d(w), _act(s.act, w))
            self.out_ch = w
        elif s.kind == "residual":
            self.a = nn.Sequential(nn.Conv2d(cin, w, s.k, s.stride, s.k // 2, bias=False), nn.BatchNorm2d(w), _act(s.act, w),
                                   nn.Conv2d(w, w, s.k, 1, s.k // 2, bias=False), nn.BatchNorm2d(w))
            self.short = (nn.Identity() if s.stride == 1 and cin == w else
                          nn.Sequential(nn.Conv2d(cin, w, 1, s.stride, bias=False), nn.BatchNorm2d(w)))
            self.post = _act(s.act, w)
            self.out_ch = w
        else:
            w1, w2 = w // 2 + 1, w - w // 2 + 1
            self.a = nn.Sequential(nn.Conv2d(cin, w1, s.k, s.stride, s.k // 2, bias=False), nn.BatchNorm2d(w1), _act(s.act, w1))
            self.b = nn.Sequential(nn.Conv2d(cin, w2, 1, s.stride, bias=False), nn.BatchNorm2d(w2), _act("relu", w2))
            self.out_ch = w1 + w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "plain":
            return self.a(x)
        if self.kind == "residual":
            return self.post(self.a(x) + self.short(x))
        a, b = self.a(x), self.b(x)
        return torch.cat([b, a], 1) if self.swap else torch.cat([a, b], 1)


class RandomMT(nn.Module):
    """A multitask network built from block and head specs (heads named t0, t1, ...)."""

    def __init__(self, blocks: list[RandomBlock], heads: list[RandomHead], in_ch: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        widths = []
        for spec in blocks:
            blk = _RandomBlockModule(spec, in_ch)
            self.blocks.append(blk)
            in_ch = blk.out_ch
            widths.append(in_ch)
        self.head_specs = list(heads)
        self.heads = nn.ModuleList()
        for h in heads:
            c = widths[h.tap]
            if h.kind == "cls":
                self.heads.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 7), nn.ReLU(), nn.Linear(7, h.out)))
            elif h.kind == "dense":
                self.heads.append(nn.Conv2d(c, h.out, 1))
            else:
                self.heads.append(nn.Sequential(cbr(c + widths[h.tap2], 6), nn.Conv2d(6, h.out, 1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = []
        for blk in self.blocks:
            x = blk(x)
            feats.append(x)
        out = {}
        for i, (h, mod) in enumerate(zip(self.head_specs, self.heads)):
            f = feats[h.tap]
            if h.kind == "fuse":  # the deeper tap is upsampled to the shallower one's size
                g = feats[h.tap2]
                if h.tap < h.tap2:
                    g = F.interpolate(g, size=f.shape[-2:], mode="nearest")
                elif h.tap > h.tap2:
                    f = F.interpolate(f, size=g.shape[-2:], mode="nearest")
                f = torch.cat([f, g], 1)
            out[f"t{i}"] = mod(f)
        return out
