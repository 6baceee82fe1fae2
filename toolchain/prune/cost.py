"""What a channel costs: FLOPs per layer (the convention of toolchain/flops.py), parameters, and
measured host latency (OpenVINO CPU, f32 precision hint, median of interleaved runs)."""

from __future__ import annotations

from typing import Callable

import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from toolchain.graph.cost import module_flops
from toolchain.graph.tracing import forward_with_hooks
from toolchain.host_latency import openvino_latency_config
from toolchain.prune.groups import ChannelGroup
from toolchain.timing import interleaved_ms, medians

_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)  # the layers toolchain/flops.py counts


@torch.no_grad()
def layer_flops(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """FLOPs of every counted layer (by module name) for one forward of `example`'s first sample."""
    flops: dict[str, int] = {}

    def hook(name: str):
        def fn(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            flops[name] = flops.get(name, 0) + module_flops(mod, tuple(inputs[0].shape), tuple(out.shape))
        return fn

    forward_with_hooks(model, example, {mod: hook(name) for name, mod in model.named_modules()
                                        if isinstance(mod, _COUNTED)})
    return flops


def model_flops(model: nn.Module, example: torch.Tensor) -> int:
    return sum(layer_flops(model, example).values())


def model_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_channel(model: nn.Module, group: ChannelGroup, flops: dict[str, int],
                      weight: Callable[[str], float] | None = None) -> float:
    """FLOPs one channel of `group` costs: its share of every coupled layer's FLOPs.

    A layer whose outputs shrink loses flops/out_channels per channel; one whose inputs shrink
    loses flops/in_channels per channel (a layer in both lists is counted once, as output).
    `weight(layer)` prices a layer's FLOPs (e.g. ms per FLOP from a latency table); default 1."""
    total = 0.0
    for name in dict.fromkeys(group.out_layers + group.in_layers):
        if name not in flops:
            continue
        mod = model.get_submodule(name)
        if name in group.out_layers:
            ch = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
        else:
            ch = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
        total += (weight(name) if weight else 1.0) * flops[name] / max(ch, 1)
    return total


def compile_openvino(model: nn.Module, example: torch.Tensor, threads: int | None = None,
                     extra_config: dict | None = None):
    """The whole model as an OpenVINO CPU compiled model, f32 precision hint, latency mode."""
    import openvino as ov

    from toolchain.torch_onnx import TaskSubset, onnx_bytes

    model = model.eval()
    with torch.no_grad():
        tasks = list(model(example))
    data = onnx_bytes(TaskSubset(model, tasks).eval(), (example,), ["input"], tasks)
    core = ov.Core()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.onnx"
        path.write_bytes(data)
        ov_model = core.read_model(str(path))
    return core.compile_model(ov_model, "CPU", openvino_latency_config("f32", threads, **(extra_config or {})))


def host_latency_ms(models: dict[str, nn.Module], example: torch.Tensor, runs: int = 30, warmup: int = 5,
                    threads: int | None = None) -> dict[str, float]:
    """{name: median latency (ms)} of each model on the host CPU with OpenVINO, runs interleaved
    (A, B, A, B, ...) so that load from other processes hits every model alike."""
    compiled = {n: compile_openvino(m, example, threads) for n, m in models.items()}
    requests = {n: c.create_infer_request() for n, c in compiled.items()}
    x = example.numpy()
    return medians(interleaved_ms({n: (lambda r=r: r.infer({0: x})) for n, r in requests.items()}, runs, warmup))


def _module_of_ov_node(node: str, modules: set[str]) -> str | None:
    """The module an OpenVINO node of an exported model came from, or None.

    The ONNX exporter scopes a node by module path, a Sequential's child as ``parent.index``:
    ``/model/encoder/stage8/stage8.1/block/block.0/block.0.0/Conv/WithoutBiases`` is module
    ``encoder.stage8.1.block.0.0`` (``model`` is TaskSubset's wrapper)."""
    parts = [p for p in node.split("/") if p]
    if parts and parts[0] == "model":
        parts = parts[1:]
    path: list[str] = []
    prev = ""
    for seg in parts:
        name = seg[len(prev) + 1:] if prev and seg.startswith(prev + ".") else seg
        path.append(name)
        prev = seg
        if ".".join(path) in modules:
            return ".".join(path)
    return None


def host_layer_times(model: nn.Module, example: torch.Tensor, runs: int = 30, warmup: int = 5,
                     threads: int | None = None) -> tuple[dict[str, float], float]:
    """({module name: median ms}, median wall ms of the model) from OpenVINO's profiling counters. Only
    Conv/Linear modules are named (fused BN and activations count toward their layer); other nodes
    (resize, concat, input reorder) count toward the wall time only."""
    import openvino as ov

    compiled = compile_openvino(model, example, threads, {"PERF_COUNT": True})
    request = compiled.create_infer_request()
    x = example[:1].numpy()
    for _ in range(warmup):
        request.infer({0: x})
    modules = {n for n, m in model.named_modules() if isinstance(m, _COUNTED)}
    per_run: dict[str, list[float]] = {}
    wall: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        request.infer({0: x})
        wall.append((time.perf_counter() - t0) * 1e3)
        times: dict[str, float] = {}
        for info in request.profiling_info:
            name = _module_of_ov_node(info.node_name, modules)
            if name is not None and info.status == ov.ProfilingInfo.Status.EXECUTED:
                times[name] = times.get(name, 0.0) + info.real_time.total_seconds() * 1e3
        for name, ms in times.items():
            per_run.setdefault(name, []).append(ms)
    return {n: statistics.median(v) for n, v in per_run.items()}, statistics.median(wall)


def table_layer_names(table, module_names: list[str]) -> dict[str, str]:
    """module name -> node name in a latency table (`mtedge profile`).

    The ONNX exporter names a layer's node after the tail of its module path
    (`encoder.stage1.0.0` -> `/stage1.0.0/Conv`): the longest dotted suffix of the module name
    that appears as a node's scope wins. Unmatched modules are left out."""
    scopes: dict[str, str] = {}
    for node in table.layers:
        parts = node.split("/")
        if len(parts) >= 3:
            scopes.setdefault(parts[-2], node)

    def suffixes(name: str) -> list[str]:  # longest first
        pieces = name.split(".")
        return [".".join(pieces[i:]) for i in range(len(pieces))]

    found = {name: next((s for s in suffixes(name) if s in scopes), None) for name in module_names}
    return {name: scopes[s] for name, s in found.items() if s is not None}


class TableLatency:
    """Latency of a model and of its channels, from per-layer times of the *unpruned* model: a latency
    table (`mtedge profile`, any target) or OpenVINO's profiling counters on this host. A prunable
    layer's time scales with its FLOPs; everything else (pooling, resizes, reorders, other layers,
    per-segment overhead) stays fixed. Layers the table does not name get its time per FLOP of their op."""

    def __init__(self, ms0: dict[str, float], total_ms: float, example: torch.Tensor, flops0: dict[str, int],
                 names: dict[str, str], table=None) -> None:
        """`ms0`/`flops0`: each Conv/Linear layer's unpruned time/FLOPs; `total_ms`: the whole model's;
        `names`: module -> timed layer name (the rest of `total_ms` is fixed); `table`: the table, if any."""
        self.table, self.names = table, names
        self.example, self.flops0, self.total_ms = example, flops0, total_ms
        self.ms0 = {n: ms0.get(n, 0.0) for n in flops0}
        self.ms_per_flop = {n: self.ms0[n] / f for n, f in flops0.items() if f}
        self.fixed_ms = max(total_ms - sum(self.ms0[n] for n in names), 0.0)

    @classmethod
    def from_table(cls, table, model: nn.Module, example: torch.Tensor) -> "TableLatency":
        """From a latency table of `model` (`mtedge profile`, any target)."""
        flops0 = layer_flops(model, example)
        names = table_layer_names(table, list(flops0))
        # Per-layer times (profiling counters) and per-segment wall times are measured apart and
        # need not add up: layer times are rescaled so that they sum to the wall-clock total.
        layers_ms = sum(table.layers.values())
        total = sum(table.segments.values()) or layers_ms
        scale = total / layers_ms if layers_ms > 0 else 1.0
        ms0 = {name: scale * table.layer_cost(names.get(name, ""), flops=f,
                                              op="Gemm" if isinstance(model.get_submodule(name), nn.Linear) else "Conv")
               for name, f in flops0.items()}
        return cls(ms0, total, example, flops0, names, table)

    @classmethod
    def measured_on_host(cls, model: nn.Module, example: torch.Tensor, runs: int = 30) -> "TableLatency":
        """Per-layer times of `model` measured here with OpenVINO (CPU, f32 hint): a latency
        table without a bundle, for latency-ordered pruning of the host itself."""
        ms0, wall = host_layer_times(model, example, runs=runs)
        return cls(ms0, wall, example, layer_flops(model, example), {n: n for n in ms0})

    def estimate_ms(self, model: nn.Module) -> float:
        flops = layer_flops(model, self.example)
        return self.fixed_ms + sum(self.ms0[n] * flops.get(n, 0) / f0 for n, f0 in self.flops0.items() if f0)

    def cost_per_channel(self, model: nn.Module, group: ChannelGroup) -> float:
        """ms one channel of `group` costs now: its FLOPs share of each coupled layer, priced
        at that layer's table time per FLOP."""
        return flops_per_channel(model, group, layer_flops(model, self.example),
                                 lambda n: self.ms_per_flop.get(n, 0.0))
