"""The one OpenVINO CPU configuration for host latency (pruning, quantization, per-layer profiles, build
plans, `mtedge bench`): an explicit precision hint, since the CPU plugin otherwise picks bf16 where the CPU
has it; the LATENCY hint, since every figure is one request at a time; threads only when fixed."""

from __future__ import annotations

from typing import Any


def openvino_latency_config(precision: str = "f32", threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """`compile_model` properties for a host latency measurement; `extra` adds or overrides
    properties (``NUM_STREAMS=1``, ``PERF_COUNT=True``)."""
    return {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
            **({"INFERENCE_NUM_THREADS": threads} if threads else {}), **extra}
