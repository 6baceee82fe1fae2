"""Latency tables: measured (OpenVINO PERF_COUNT here, TensorRT on the device) or roofline estimates.

Table format (``format: "mtedge-latency"``, version 1): docs/targets.md, "Latency table format".
The pruner reads it with :func:`load_table` and asks :meth:`LatencyTable.layer_cost`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import shape_inference

from toolchain.bundle.files import read_document, write_json_atomic
from toolchain.bundle.manifest import Bundle, Manifest
from toolchain.errors import SpecError
from toolchain.flops import conv_flops, matmul_flops
from toolchain.host_latency import openvino_latency_config
from toolchain.targets.profile import TargetProfile
from toolchain.timing import interleaved_ms

FORMAT = "mtedge-latency"
_ELEM = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
         onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT32: 4, onnx.TensorProto.INT64: 8,
         onnx.TensorProto.BOOL: 1, onnx.TensorProto.DOUBLE: 8}
_ELEMENTWISE = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Add", "Sub", "Mul", "Div",
                "Pow", "Sqrt", "Exp", "Erf", "Neg", "Abs", "Max", "Min", "PRelu", "Elu", "Selu", "Softplus", "Gelu",
                "Mish", "Where", "Cast", "QuantizeLinear", "DequantizeLinear"}
_FREE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "Dropout"}
_MATH = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_EPILOGUE = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid", "Tanh", "Elu", "Gelu", "Mish"}


@dataclass(frozen=True)
class NodeCost:
    """Work of one ONNX node: math operations and bytes moved (inputs + weights + outputs)."""

    name: str
    op: str
    flops: int
    bytes: int
    int8: bool = False  # Conv/Gemm/MatMul whose inputs are dequantized int8 (runs on int8 tensor cores)
    fused: bool = False  # Q/DQ, or an activation right after Conv/Gemm/MatMul: engines fuse these (no own kernel)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[list[int], int]]:
    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    out: dict[str, tuple[list[int], int]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.output, *g.value_info]:
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        out[vi.name] = (dims, tt.elem_type)
    for init in g.initializer:
        out[init.name] = (list(init.dims), init.data_type)
    return out


def node_costs(model: onnx.ModelProto) -> list[NodeCost]:
    """Roofline work and bytes per node from shapes (onnx.shape_inference); symbolic dims count as 1.

    Work is the FLOPs convention (toolchain/flops.py) for Conv/ConvTranspose/Gemm/MatMul, plus what
    the roofline also charges: one op per bias element, BN, pooling, resize and element-wise ops."""
    shapes = _shapes(model)
    producers = {o: n for n in model.graph.node for o in n.output}

    def numel(t: str) -> int:
        return int(np.prod(shapes[t][0])) if t in shapes else 0

    def nbytes(t: str) -> int:
        return numel(t) * _ELEM.get(shapes[t][1], 4) if t in shapes else 0

    consumers = Counter(t for n in model.graph.node for t in n.input)
    costs = []
    for i, n in enumerate(model.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        ins = [t for t in n.input if t]
        out_elems = sum(numel(o) for o in n.output)
        moved = sum(nbytes(t) for t in ins) + sum(nbytes(o) for o in n.output)
        int8 = n.op_type in _MATH and any(producers.get(t) is not None and producers[t].op_type == "DequantizeLinear"
                                          for t in ins[:2])
        bias = out_elems if len(ins) > 2 else 0  # roofline work on top of the FLOPs convention
        if n.op_type in ("Conv", "ConvTranspose") and len(ins) >= 2 and ins[1] in shapes:
            flops = conv_flops(numel(ins[0]), out_elems, shapes[ins[1]][0], n.op_type == "ConvTranspose") + bias
        elif n.op_type == "Gemm" and len(ins) >= 2:
            a = shapes.get(ins[0], ([1, 1], 1))[0]
            trans_a = next((at.i for at in n.attribute if at.name == "transA"), 0)
            flops = matmul_flops(out_elems, a[0] if trans_a else a[-1]) + bias
        elif n.op_type == "MatMul" and len(ins) == 2:
            a = shapes.get(ins[0], ([1], 1))[0]
            flops = matmul_flops(out_elems, a[-1] if a else 1)
        elif n.op_type in ("MaxPool", "AveragePool"):
            k = next((list(at.ints) for at in n.attribute if at.name == "kernel_shape"), [1])
            flops = out_elems * int(np.prod(k))
        elif n.op_type in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "Softmax",
                           "LogSoftmax"):
            flops = numel(ins[0]) * (3 if "Softmax" in n.op_type else 1)
        elif n.op_type in ("BatchNormalization", "InstanceNormalization", "LayerNormalization"):
            flops = 2 * out_elems if n.op_type == "BatchNormalization" else 5 * out_elems
        elif n.op_type in ("Resize", "Upsample"):
            flops = 4 * out_elems
        elif n.op_type in _ELEMENTWISE:
            flops = out_elems
        elif n.op_type in _FREE:
            flops, moved = 0, 0
        else:  # data movement (Concat, Slice, Transpose, Pad, ...): no math, bytes as counted
            flops = 0
        src = producers.get(ins[0]) if ins else None
        fused = n.op_type in ("QuantizeLinear", "DequantizeLinear") or (
            n.op_type in _EPILOGUE and src is not None and src.op_type in _MATH and consumers.get(ins[0], 0) == 1)
        costs.append(NodeCost(name, n.op_type, int(flops), int(moved), int8, fused))
    return costs


def estimate_layer_ms(profile: TargetProfile, cost: NodeCost, precision: str) -> float:
    """Roofline time of one node on ``profile``: max(flops / peak, bytes / bandwidth) / efficiency + overhead
    (docs/targets.md, `mtedge profile`); other ops than Conv/Gemm/MatMul use the fp32 (fp16 for fp16
    variants) rate, free and fused nodes cost 0."""
    if cost.fused or (cost.flops == 0 and cost.bytes == 0):
        return 0.0
    est = profile.data.get("estimate", {})
    eff = float(est.get("efficiency", 0.6))
    overhead_us = float(est.get("layer_overhead_us", 5.0 if profile.backend == "tensorrt" else 1.0))
    float_precision = "fp16" if precision in ("fp16", "mixed") else "fp32"
    if cost.op in _MATH:
        peak = profile.peak_ops_per_s("int8" if cost.int8 else float_precision)
    else:
        peak = profile.peak_ops_per_s("fp32") * (2 if float_precision == "fp16" else 1)
    bw = profile.bandwidth_gbs * 1e9
    moved = cost.bytes // 4 if cost.int8 else cost.bytes  # int8 kernels read/write 1-byte tensors
    seconds = max(cost.flops / peak, moved / bw) / eff
    return seconds * 1e3 + overhead_us / 1e3


@dataclass
class LatencyTable:
    """A latency table (see the module docstring); times in milliseconds."""

    target: str
    source: str  # "measured" or "estimate"
    segments: dict[str, float]
    layers: dict[str, float]
    layer_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self) -> dict[str, float]:
        out: Counter[str] = Counter()
        for name, ms in self.layers.items():
            out[self.layer_info.get(name, {}).get("op", "?")] += ms
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def layer_cost(self, name: str, *, op: str | None = None, flops: int | None = None) -> float:
        """Milliseconds of the ONNX node ``name``. When the table has no such node (renamed by pruning,
        fused away) and ``op``/``flops`` are given, scale the table's time-per-flop of that op type; else 0."""
        if name in self.layers:
            return self.layers[name]
        if op is not None and flops:
            same = [(ms, self.layer_info[n]["flops"]) for n, ms in self.layers.items()
                    if self.layer_info.get(n, {}).get("op") == op and self.layer_info[n].get("flops")]
            if same:
                return flops * sum(ms for ms, _ in same) / sum(f for _, f in same)
        return 0.0

    def cost_fn(self) -> Callable[[str], float]:
        """``name -> ms``, what the pruner's latency-aware ordering calls per layer."""
        return self.layer_cost

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": 1, "target": self.target, "source": self.source, **self.meta,
                "unit": "ms", "segments": self.segments, "layers": self.layers, "layer_info": self.layer_info,
                "ops": self.ops}

    def save(self, path: str | Path) -> Path:
        write_json_atomic(path, self.to_json())
        return Path(path)


_TABLE_FIELDS = ("target", "source", "segments", "layers")  # required, in LatencyTable's order


def load_table(path: str | Path) -> LatencyTable:
    """Read a latency table written by `mtedge profile`; names the file and the problem when malformed."""
    p = Path(path)
    d = read_document(p, SpecError, f"cannot read latency table {p}: no such file",
                      lambda why: f"cannot read latency table {p}: {why}")
    if d.get("format") != FORMAT or d.get("format_version") != 1:
        raise SpecError(f"{p} is not an mtedge latency table (format {d.get('format')!r} "
                        f"version {d.get('format_version')!r}; expected {FORMAT!r} 1)")
    if missing := [key for key in _TABLE_FIELDS if key not in d]:
        raise SpecError(f"{p}: missing field {missing[0]!r}")
    target, source, seg_ms, layer_ms = (d[key] for key in _TABLE_FIELDS)
    if source not in ("measured", "estimate"):
        raise SpecError(f"{p}: field 'source' is {source!r}; expected 'measured' or 'estimate'")
    meta = {k: v for k, v in d.items() if k not in ("format", "format_version", "target", "source", "segments",
                                                     "layers", "layer_info", "ops", "unit")}
    return LatencyTable(target, source, {k: float(v) for k, v in seg_ms.items()},
                        {k: float(v) for k, v in layer_ms.items()}, d.get("layer_info", {}), meta)


def _segment_models(bundle: Path, manifest: Manifest, variant: str) -> dict[str, tuple[Path, onnx.ModelProto]]:
    b = Bundle(bundle, manifest)
    paths = {seg: b.path(manifest.variant(variant).segments[seg]) for seg in manifest.segments}  # topological order
    return {seg: (path, onnx.load(str(path))) for seg, path in paths.items()}


def _meta(manifest: Manifest, variant: str, **extra: Any) -> dict[str, Any]:
    return {"bundle": manifest.name, "variant": variant, "precision": manifest.variant(variant).precision,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}


def _unique(name: str, seg: str, taken: dict[str, Any]) -> str:
    return name if name not in taken else f"{seg}/{name}"


def _info(seg: str, c: NodeCost) -> dict[str, Any]:
    return {"segment": seg, "op": c.op, "flops": c.flops, "bytes": c.bytes}


def estimate_table(bundle: Path, manifest: Manifest, profile: TargetProfile, variant: str) -> LatencyTable:
    """Roofline estimate of every node of every segment of ``variant`` on ``profile``."""
    precision = manifest.variant(variant).precision
    segments, layers, info = {}, {}, {}
    for seg, (_, model) in _segment_models(bundle, manifest, variant).items():
        timed = [(c, estimate_layer_ms(profile, c, precision)) for c in node_costs(model)]
        for c, ms in timed:
            key = _unique(c.name, seg, layers)
            layers[key], info[key] = ms, _info(seg, c)
        segments[seg] = sum((ms for _, ms in timed), 0.0)
    return LatencyTable(profile.name, "estimate", segments, layers, info,
                        _meta(manifest, variant, method="roofline", peak=profile.data["peak"],
                              bandwidth_gbs=profile.bandwidth_gbs))


def _match_onnx_node(ov_name: str, onnx_names: list[str], tensor_producer: dict[str, str]) -> str | None:
    """Map an OpenVINO executed-primitive name to the ONNX node it came from."""
    for cand in (ov_name, ov_name.split("/sink_port")[0], ov_name.rsplit(".", 1)[0]):
        if cand in tensor_producer:
            return tensor_producer[cand]
    # else the longest node name it extends (the first of equal length)
    return max((n for n in onnx_names if ov_name == n or ov_name.startswith(n + "/")), key=len, default=None)


def measure_openvino(bundle: Path, manifest: Manifest, profile: TargetProfile, variant: str,
                     runs: int = 20, warmup: int = 3) -> LatencyTable:
    """Per-segment (wall clock) and per-layer (PERF_COUNT) medians over ``runs`` on the CPU, each
    executed primitive attributed to its ONNX node (docs/targets.md, `mtedge profile`)."""
    import openvino as ov

    core = ov.Core()
    hint = profile.data.get("build", {}).get("inference_precision", "f32")
    vsegs = manifest.variant(variant).segments
    segments, layers, info = {}, {}, {}
    for seg, (path, model) in _segment_models(bundle, manifest, variant).items():
        costs = {c.name: c for c in node_costs(model)}
        names = list(costs)
        producer = {o: (n.name or f"{n.op_type}_{i}") for i, n in enumerate(model.graph.node) for o in n.output}
        compiled = core.compile_model(core.read_model(str(path)), "CPU", openvino_latency_config(hint, PERF_COUNT=True))
        request = compiled.create_infer_request()
        rng = np.random.default_rng(0)
        feeds = {t.name: rng.standard_normal(t.shape).astype(t.dtype) for t in vsegs[seg].inputs}
        per_layer: dict[str, list[float]] = {}

        def attribute() -> None:
            """After each timed run: that run's PERF_COUNT times, summed per ONNX node."""
            this_run: dict[str, float] = {}
            for p in request.profiling_info:
                if str(p.status).endswith("NOT_RUN"):
                    continue
                # else a reorder, named "<src>_<layout>_<layout>_<dst>": the first part that maps
                parts = (_match_onnx_node(part, names, producer) for part in p.node_name.split("_"))
                key = (_match_onnx_node(p.node_name, names, producer) or next(filter(None, parts), None)
                       or f"{seg}/reorder")
                this_run[key] = this_run.get(key, 0.0) + p.real_time.total_seconds() * 1e3
            for k, v in this_run.items():
                per_layer.setdefault(k, []).append(v)

        wall = interleaved_ms({seg: lambda: request.infer(feeds)}, runs, warmup, after_round=attribute)[seg]
        segments[seg] = statistics.median(wall)
        for name in names + [k for k in per_layer if k not in costs]:
            key = _unique(name, seg, layers)
            samples = per_layer.get(name, [])
            layers[key] = statistics.median(samples) if samples else 0.0
            info[key] = _info(seg, costs.get(name, NodeCost(name, "Reorder", 0, 0)))
    return LatencyTable(profile.name, "measured", segments, layers, info,
                        _meta(manifest, variant, method="openvino PERF_COUNT", runs=runs, warmup=warmup,
                              openvino=ov.get_version().split("-")[0], inference_precision=hint))


def profile_bundle(bundle: Path, manifest: Manifest, profile: TargetProfile, variant: str, *,
                   runs: int = 20, estimate: bool = False) -> LatencyTable:
    """Measure where possible (OpenVINO targets run here), else a roofline estimate."""
    if variant not in manifest.variants:
        raise SpecError(f"variant {variant!r} is not in bundle {manifest.name!r}; "
                        f"variants: {', '.join(manifest.variants)}")
    if runs < 1 or not math.isfinite(runs):
        raise SpecError(f"--runs must be >= 1, got {runs}")
    if profile.backend == "openvino" and not estimate:
        return measure_openvino(bundle, manifest, profile, variant, runs=runs)
    return estimate_table(bundle, manifest, profile, variant)
