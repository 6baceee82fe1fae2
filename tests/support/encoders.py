"""Small multitask networks on the encoder families people deploy, for pruning generality tests.

Each takes [B, 3, H, W] (odd sizes work) and returns {task: tensor} from 2-3 heads that tap the
encoder at different depths:

- ResNetMT          basic residual blocks with projection shortcuts (residual adds couple channels)
- MobileNetV3MT     inverted residuals, depthwise convs, squeeze-excitation, hardswish
- EfficientNetMT    MBConv with SiLU and squeeze-excitation, a 5x5 depthwise, stochastic-depth-free
- RegNetMT          grouped 3x3 convs (group width 8) inside bottleneck residual blocks
- DenseNetMT        dense blocks: every layer's output concatenated to its input
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cba(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, squeeze: int, gate: type[nn.Module] = nn.Hardsigmoid, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2, self.gate = nn.Conv2d(ch, squeeze, 1), act(), nn.Conv2d(squeeze, ch, 1), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def dense_head(cin: int, cout: int, mid: int = 16) -> nn.Sequential:
    return nn.Sequential(cba(cin, mid), nn.Conv2d(mid, cout, 1))


def cls_head(cin: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 32), nn.ReLU(), nn.Linear(32, classes))


class _TwoStageMT(nn.Module):
    """stem -> stage 1 -> stage 2, each head reading one stage (1 or 2). Stages keep their family's
    attribute names (ResNet's layer1/layer2); arguments are built in the order the modules
    register, so each network's random initialization is what its own __init__ made."""

    def __init__(self, stem: nn.Module, stages: dict[str, nn.Module], heads: dict[str, tuple[nn.Module, int]]) -> None:
        super().__init__()
        self.stem = stem
        for name, module in {**stages, **{t: head for t, (head, _) in heads.items()}}.items():
            self.add_module(name, module)
        self.stages = list(stages)
        self.taps = {t: stage for t, (_, stage) in heads.items()}

    def forward(self, x):
        a = getattr(self, self.stages[0])(self.stem(x))
        features = {1: a, 2: getattr(self, self.stages[1])(a)}
        return {t: getattr(self, t)(features[stage]) for t, stage in self.taps.items()}


class _Residual(nn.Module):
    """relu(layers(x) + short(x)): the layers given by name, in order; `short` a strided 1x1
    projection where the shape changes (built last, as ResNet and RegNet build it)."""

    def __init__(self, cin: int, cout: int, stride: int, **layers: nn.Module) -> None:
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.order = list(layers)
        self.short = cba(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        y = x
        for name in self.order:
            y = getattr(self, name)(y)
        return F.relu(y + self.short(x))


class _BasicBlock(_Residual):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(cin, cout, stride, conv1=cba(cin, cout, stride=stride), conv2=cba(cout, cout, act=None))


class ResNetMT(_TwoStageMT):
    def __init__(self) -> None:
        super().__init__(cba(3, 16, stride=2),
                         {"layer1": nn.Sequential(_BasicBlock(16, 16, 1), _BasicBlock(16, 16, 1)),
                          "layer2": nn.Sequential(_BasicBlock(16, 32, 2), _BasicBlock(32, 32, 1))},
                         {"seg": (dense_head(16, 3), 1), "depth": (dense_head(32, 1), 2), "cls": (cls_head(32, 5), 2)})


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, se: bool, act: type[nn.Module],
                 se_gate: type[nn.Module] = nn.Hardsigmoid) -> None:
        super().__init__()
        layers: list[nn.Module] = [cba(cin, hidden, 1, act=act), cba(hidden, hidden, k, stride, groups=hidden, act=act)]
        if se:
            layers.append(SqueezeExcite(hidden, max(8, hidden // 4), gate=se_gate, act=act if act is nn.SiLU else nn.ReLU))
        layers.append(cba(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.res else y


class MobileNetV3MT(_TwoStageMT):
    def __init__(self) -> None:
        # depth stays at stride 16 (stage 2): resizing it to stage 1's shape would make a segment
        # read stage 1 only for its shape, an input the ONNX exporter drops (onnxruntime then
        # rejects the feed)
        super().__init__(cba(3, 16, stride=2, act=nn.Hardswish),
                         {"s1": nn.Sequential(_InvertedResidual(16, 32, 24, 3, 2, False, nn.ReLU),
                                              _InvertedResidual(24, 48, 24, 3, 1, False, nn.ReLU),
                                              _InvertedResidual(24, 48, 32, 3, 1, False, nn.ReLU)),
                          "s2": nn.Sequential(_InvertedResidual(32, 64, 40, 5, 2, True, nn.Hardswish),
                                              _InvertedResidual(40, 96, 40, 5, 1, True, nn.Hardswish))},
                         {"seg": (dense_head(32, 4), 1), "depth": (dense_head(40, 1), 2),
                          "cls": (nn.Sequential(cba(40, 96, 1, act=nn.Hardswish), cls_head(96, 7)), 2)})


class EfficientNetMT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cba(3, 16, stride=2, act=nn.SiLU)
        self.s1 = nn.Sequential(_InvertedResidual(16, 16, 16, 3, 1, True, nn.SiLU, nn.Sigmoid),
                                _InvertedResidual(16, 64, 24, 3, 2, True, nn.SiLU, nn.Sigmoid))
        self.s2 = nn.Sequential(_InvertedResidual(24, 96, 40, 5, 2, True, nn.SiLU, nn.Sigmoid),
                                _InvertedResidual(40, 160, 40, 5, 1, True, nn.SiLU, nn.Sigmoid))
        self.head_conv = cba(40, 64, 1, act=nn.SiLU)
        self.seg = dense_head(24, 3)
        self.cls = cls_head(64, 6)

    def forward(self, x):
        a = self.s1(self.stem(x))
        b = self.head_conv(self.s2(a))
        return {"seg": self.seg(a), "cls": self.cls(b)}


class _RegBlock(_Residual):
    """RegNet's X block: 1x1 -> grouped 3x3 (group width 8) -> 1x1, residual."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int = 8) -> None:
        super().__init__(cin, cout, stride, a=cba(cin, cout, 1), b=cba(cout, cout, 3, stride, groups=cout // group_width),
                         c=cba(cout, cout, 1, act=None))


class RegNetMT(_TwoStageMT):
    def __init__(self) -> None:
        super().__init__(cba(3, 16, stride=2),
                         {"s1": nn.Sequential(_RegBlock(16, 32, 2), _RegBlock(32, 32, 1)),
                          "s2": nn.Sequential(_RegBlock(32, 48, 2), _RegBlock(48, 48, 1))},
                         {"seg": (dense_head(32, 2), 1), "cls": (cls_head(48, 4), 2), "depth": (dense_head(48, 1), 2)})


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 2 * growth, 1, bias=False),
                                  nn.BatchNorm2d(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


class DenseNetMT(nn.Module):
    def __init__(self, growth: int = 8) -> None:
        super().__init__()
        self.stem = cba(3, 16, stride=2)
        self.block1 = nn.Sequential(_DenseLayer(16, growth), _DenseLayer(16 + growth, growth))
        self.trans = nn.Sequential(nn.BatchNorm2d(16 + 2 * growth), nn.ReLU(), nn.Conv2d(16 + 2 * growth, 24, 1, bias=False),
                                   nn.AvgPool2d(2))
        self.block2 = nn.Sequential(_DenseLayer(24, growth), _DenseLayer(24 + growth, growth))
        self.seg = dense_head(16 + 2 * growth, 3)
        self.cls = cls_head(24 + 2 * growth, 5)

    def forward(self, x):
        a = self.block1(self.stem(x))
        b = self.block2(self.trans(a))
        return {"seg": self.seg(a), "cls": self.cls(b)}


ENCODERS = {"resnet": ResNetMT, "mobilenetv3": MobileNetV3MT, "efficientnet": EfficientNetMT, "regnet": RegNetMT,
            "densenet": DenseNetMT}


def calibrated_resnet(seed: int = 0):
    """A small ResNetMT whose BatchNorm statistics match its (random) data, as a trained network's
    do: an untrained net's default statistics would make eval and train differ. Returns the model
    (eval mode), its label-free recipe and one example input."""
    from support.architectures import recipe_for
    from toolchain.data.loaders import batches

    torch.manual_seed(seed)
    model = ResNetMT()
    recipe = recipe_for(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x, _ in batches(recipe, "train", count=64, batch_size=16):
            model(x)
    return model.eval(), recipe, torch.randn(recipe.input.shape)
