"""INT8 post-training quantization of one segment with NNCF (ONNX in, Q/DQ ONNX out).

The output is explicitly quantized ONNX: symmetric int8 QuantizeLinear/DequantizeLinear pairs
with zero points of 0 (what TensorRT's explicit quantization accepts) around float ops that
OpenVINO's low-precision transformations fuse into real int8 kernels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

from toolchain.errors import MtedgeError
from toolchain.bundle.executor import Samples, ort_session

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
OVERFLOW_FIX = ("first_layer_only", "enable", "disable")  # nncf.OverflowFix values
# activation storage: int8 for TensorRT (explicit quantization takes int8 Q/DQ only), uint8 (NNCF's
# own choice after ReLU) for OpenVINO CPUs: OpenVINO 2026.4's CPU plugin computes a Conv fed by a
# Concat of int8 Q/DQ tensors wrongly (docs/quantization.md, "Signed activations and OpenVINO")
ACTIVATIONS = {"int8": True, "uint8": False}  # name -> Int8Settings.signed_activations


class QuantizationError(MtedgeError):
    """NNCF could not quantize a segment, or the result breaks a contract (e.g. non-zero zero points)."""


@dataclass(frozen=True)
class Int8Settings:
    """Knobs of nncf.quantize that the bundle records in its calibration provenance."""

    preset: str = "performance"  # symmetric weights and activations: TensorRT needs zero points of 0
    fast_bias_correction: bool = True
    target_device: str = "ANY"
    per_channel_weights: bool = True  # NNCF's default for Conv/Gemm weights on the ONNX backend
    signed_activations: bool = True  # NNCF picks uint8 after ReLU; TensorRT's Q/DQ takes int8 only (ACTIVATIONS)
    # nncf.OverflowFix. x86 CPUs without VNNI (AVX2, AVX-512F) add u8 x s8 products in pairs into a
    # saturating int16, so OpenVINO's int8 kernels clip full-range weights there while onnxruntime and
    # TensorRT do not: "enable" quantizes every Conv/MatMul weight to half the range (7 bits) so every
    # executor computes the same thing; "first_layer_only" (NNCF's default) fixes only the input
    # layers (measured: docs/quantization.md, "The overflow fix")
    overflow_fix: str = "enable"

    def __post_init__(self) -> None:
        if self.overflow_fix not in OVERFLOW_FIX:
            raise QuantizationError(f"overflow_fix {self.overflow_fix!r}: expected one of {', '.join(OVERFLOW_FIX)}")

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def quantize_segment(model: onnx.ModelProto, samples: Samples, float_layers: Iterable[str] = (),
                     settings: Int8Settings = Int8Settings(), segment: str = "segment") -> onnx.ModelProto:
    """Q/DQ ONNX of `model`, calibrated on `samples`; nodes named in `float_layers` stay float.

    Raises QuantizationError naming the segment when NNCF fails or the result is not symmetric.
    """
    import nncf

    nncf.set_log_level(logging.ERROR)
    names = sorted(set(float_layers))
    known = {n.name for n in model.graph.node}
    if unknown := [n for n in names if n not in known]:
        raise QuantizationError(f"segment {segment!r} has no node(s) {', '.join(unknown)} to keep in float; "
                                f"node names: {', '.join(sorted(known))}")
    if not samples:
        raise QuantizationError(f"segment {segment!r}: no calibration samples (raise --calibration)")
    kwargs = dict(subset_size=len(samples), preset=nncf.QuantizationPreset(settings.preset),
                  fast_bias_correction=settings.fast_bias_correction,
                  target_device=getattr(nncf.TargetDevice, settings.target_device),
                  advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(settings.overflow_fix)),
                  **({"ignored_scope": nncf.IgnoredScope(names=names)} if names else {}))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            q = nncf.quantize(model, nncf.Dataset(samples), **kwargs)
    except Exception as e:  # NNCF raises many types
        raise QuantizationError(f"NNCF failed to quantize segment {segment!r} ({type(e).__name__}: {e})") from e
    if settings.signed_activations:
        q = to_signed_activations(q, segment)
    check_symmetric(q, segment, settings.signed_activations)
    return q


def to_signed_activations(model: onnx.ModelProto, segment: str = "segment") -> onnx.ModelProto:
    """Rewrite unsigned (uint8, zero point 0) Q/DQ pairs as signed int8 ones covering the same range.

    NNCF quantizes non-negative activations (after ReLU) to uint8, which OpenVINO runs but
    TensorRT's explicit quantization rejects (INT8 only, zero point 0). [0, 255*s] becomes
    [-127*s', 127*s'] with s' = 255*s/127: one bit of resolution less on those tensors, which the
    accuracy control then sees (NNCF's own `signedness_to_force` is refused by its HW configs).
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    scales, zero_points = set(), set()
    for node, zp in _zero_points(m):
        if zp.data_type == onnx.TensorProto.UINT8:
            if np.any(numpy_helper.to_array(zp) != 0):
                raise QuantizationError(f"segment {segment!r}: {node.name} is asymmetric (uint8 zero point != 0); "
                                        "use preset 'performance'")
            scales.add(node.input[1])
            zero_points.add(zp.name)
    for name in scales:
        s = inits[name]
        s.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(s) * (255.0 / 127.0)).astype(np.float32), name))
    for name in zero_points:
        zp = inits[name]
        zp.CopyFrom(numpy_helper.from_array(np.zeros(numpy_helper.to_array(zp).shape, np.int8), name))
    for vi in m.graph.value_info:  # Q outputs recorded as uint8
        if vi.type.tensor_type.elem_type == onnx.TensorProto.UINT8:
            vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
    return m


def check_symmetric(model: onnx.ModelProto, segment: str = "segment", signed: bool = True) -> None:
    """Every Q/DQ zero point must be zeros, of type int8 when `signed` (TensorRT explicit
    quantization takes int8 only); raise otherwise."""
    for node, zp in _zero_points(model):
        if (signed and zp.data_type != onnx.TensorProto.INT8) or np.any(numpy_helper.to_array(zp) != 0):
            raise QuantizationError(f"segment {segment!r}: {node.name} has a non-zero or uint8 zero point; "
                                    "TensorRT needs symmetric int8 (use preset 'performance')")


def _zero_points(model: onnx.ModelProto) -> Iterator[tuple[onnx.NodeProto, onnx.TensorProto]]:
    """(Q/DQ node, its zero point) for every Q/DQ node whose zero point is an initializer."""
    inits = {i.name: i for i in model.graph.initializer}
    return ((n, inits[n.input[2]]) for n in model.graph.node
            if n.op_type in QDQ_OPS and len(n.input) > 2 and n.input[2] in inits)


def quantized_layers(qmodel: onnx.ModelProto) -> list[str]:
    """Names of the nodes that read a DequantizeLinear output (the layers running in int8),
    weighted ops first, in graph order: the candidates for keeping in float."""
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    hits = [n for n in qmodel.graph.node if n.op_type not in QDQ_OPS
            and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)]
    return [n.name for n in hits if n.op_type in WEIGHTED_OPS] + [n.name for n in hits if n.op_type not in WEIGHTED_OPS]


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                          for n in dict.fromkeys(names) if n not in existing)
    return m


def layer_errors(fp32: onnx.ModelProto, int8: onnx.ModelProto, samples: Samples, layers: Iterable[str]) -> dict[str, float]:
    """Quantization error each layer *adds*: normalized MSE (int8 vs fp32) of the layer's output
    minus that of its data input, on the same segment inputs. A cheap ranking of which layers to
    try in float first; larger is worse."""
    nodes = {n.name: n for n in fp32.graph.node}
    layers = [name for name in layers if name in nodes]
    if not layers or not samples:
        return {}
    inputs = {name: nodes[name].input[0] for name in layers}
    outputs = {name: nodes[name].output[0] for name in layers}
    graph_inputs = {i.name for i in fp32.graph.input}
    inferred = onnx.shape_inference.infer_shapes(fp32).graph
    is_float = {v.name for v in list(inferred.value_info) + list(inferred.output)
                if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    layers = [name for name in layers if outputs[name] in is_float]
    tensors = sorted({*(outputs[n] for n in layers),
                      *(inputs[n] for n in layers if inputs[n] in is_float and inputs[n] not in graph_inputs)})
    if not tensors:
        return {}
    ref_sess, q_sess = ort_session(_with_outputs(fp32, tensors)), ort_session(_with_outputs(int8, tensors))
    num = dict.fromkeys(tensors, 0.0)
    den = dict.fromkeys(tensors, 0.0)
    for feed in samples:
        ref = dict(zip(tensors, ref_sess.run(tensors, feed)))
        got = dict(zip(tensors, q_sess.run(tensors, feed)))
        for t in tensors:
            num[t] += float(np.sum((got[t].astype(np.float64) - ref[t]) ** 2))
            den[t] += float(np.sum(ref[t].astype(np.float64) ** 2))
    nmse = {t: num[t] / max(den[t], 1e-12) for t in tensors}
    return {name: max(0.0, nmse[outputs[name]] - nmse.get(inputs[name], 0.0)) for name in layers}
