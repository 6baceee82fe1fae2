"""The one FLOPs convention, torch.utils.flop_counter's (tests/test_flops.py holds them equal).

FLOPs = 2 x multiply-accumulates of convolutions (transposed too), linear layers and matrix
products. Bias adds, normalization, activations, pooling, resizing and other element-wise ops
count 0. Every FLOPs figure (inspect, partition segments, pruning cost and reports, slim
configurations) is this count; the roofline latency estimate (targets/latency.py) adds its own
element-wise work on top of it. Pure arithmetic on shapes: torch and ONNX callers share it.
"""

from __future__ import annotations

import math
from typing import Sequence


def matmul_flops(out_numel: int, reduced: int) -> int:
    """Every output element sums ``reduced`` products (linear layers, matmul, Gemm)."""
    return 2 * out_numel * reduced


def conv_flops(in_numel: int, out_numel: int, weight_shape: Sequence[int], transposed: bool = False) -> int:
    """A convolution's weight is [Cout, Cin/groups, *kernel] (transposed: [Cin, Cout/groups, *kernel], the
    same in torch and ONNX): each output element reduces Cin/groups x kernel products; a transposed one
    scatters each input element into Cout/groups x kernel products."""
    return matmul_flops(in_numel if transposed else out_numel, math.prod(weight_shape[1:]))
