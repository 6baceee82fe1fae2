"""The one OpenVINO CPU configuration for host latency (pruning's latency table, quantization's
variant latency, `mtedge bench`, per-layer profiles, OpenVINO engine builds).

An explicit precision hint, because the CPU plugin otherwise runs bf16 where the CPU has it and a
measurement would depend on the machine; the LATENCY performance hint, because every figure is one
request at a time; a thread count only when the caller fixes one (None lets OpenVINO choose).
"""

from __future__ import annotations

from typing import Any


def openvino_latency_config(precision: str = "f32", threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """`compile_model` properties for a host latency measurement; `extra` adds or overrides
    properties (``NUM_STREAMS=1``, ``PERF_COUNT=True``)."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return {**config, **extra}
