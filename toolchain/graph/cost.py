"""FLOPs and parameters of traced nodes.

FLOPs follow torch.utils.flop_counter's convention: 2 x multiply-accumulates of convolutions,
linear layers and matrix products; element-wise ops, pooling, normalization are not counted.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from toolchain.graph.tracing import is_tensor_node, node_shape


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def node_flops(gm: fx.GraphModule, node: fx.Node) -> int:
    if not is_tensor_node(node):
        return 0
    out = node_shape(node)
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            return 2 * _numel(out) * (mod.in_channels // mod.groups) * kh * kw
        if isinstance(mod, nn.ConvTranspose2d):
            inp = node_shape(node.args[0])
            kh, kw = mod.kernel_size
            return 2 * _numel(inp) * (mod.out_channels // mod.groups) * kh * kw
        if isinstance(mod, nn.Linear):
            return 2 * _numel(out) * mod.in_features
        return 0
    if node.op == "call_function":
        if node.target in (F.linear,):
            w = node.args[1]
            return 2 * _numel(out) * node_shape(w)[-1] if isinstance(w, fx.Node) and is_tensor_node(w) else 0
        if node.target in (torch.matmul, torch.bmm, torch.mm, operator.matmul):
            a = node.args[0]
            return 2 * _numel(out) * node_shape(a)[-1] if isinstance(a, fx.Node) and is_tensor_node(a) else 0
        if node.target in (F.conv2d,):
            w = node.args[1]
            if isinstance(w, fx.Node) and is_tensor_node(w):
                ws = node_shape(w)
                return 2 * _numel(out) * ws[1] * ws[2] * ws[3]
    return 0


def node_params(gm: fx.GraphModule, node: fx.Node) -> int:
    if node.op == "call_module":
        return sum(p.numel() for p in gm.get_submodule(node.target).parameters())
    if node.op == "get_attr":
        obj = gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        return obj.numel() if isinstance(obj, nn.Parameter) else 0
    return 0
