"""OpenVINO CPU latency of bundle variants, measured side by side.

Each segment file of a variant is compiled on the CPU plugin with an explicit
INFERENCE_PRECISION_HINT (this CPU would otherwise run bf16): `f32` for fp32 and int8 variants
(the Q/DQ layers run as real int8 kernels through OpenVINO's low-precision transformations; the
rest stays f32), `f16` for fp16 variants. The variants' chains (all tasks, segments in manifest
order) run interleaved, one iteration each in turn, so that load from other processes hits them
alike; the figure is the median over `runs` iterations.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from toolchain.bundle.executor import openvino_runners, run_dag
from toolchain.bundle.manifest import Bundle
from toolchain.host_latency import openvino_latency_config
from toolchain.timing import interleaved_ms

HINTS = {"fp32": "f32", "int8": "f32", "mixed": "f32", "fp16": "f16"}


class _Chain:
    """A variant's runners compiled at one precision hint."""

    def __init__(self, core: Any, bundle: Bundle, variant: str, threads: int, hint: str | None = None) -> None:
        self.hint = hint or HINTS[bundle.variant(variant).precision]
        self.variant = variant
        cfg = openvino_latency_config(self.hint, threads, NUM_STREAMS=1)
        self.runners = openvino_runners(bundle, variant, cfg, core)


BF16_ROW = "fp32@bf16"  # the fp32 files run at the CPU plugin's bf16 precision (its default where native)


def bf16_native() -> bool:
    """Whether this CPU runs bf16 in hardware (OpenVINO's CPU capabilities list BF16); elsewhere
    a bf16 hint falls back to f32 and the fp32@bf16 row is just fp32 again."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def measure(bundle: Bundle, variants: list[str], runs: int = 50, warmup: int = 5, threads: int = 2,
            bf16: bool = False) -> dict[str, Any]:
    """Median whole-chain latency (ms) per variant and the hint each was compiled with; with
    `bf16`, also the fp32 files at the bf16 hint (row ``fp32@bf16``), measured in the same loop."""
    import openvino as ov

    core = ov.Core()
    chains = {v: _Chain(core, bundle, v, threads) for v in variants}
    if bf16 and "fp32" in variants:
        chains[BF16_ROW] = _Chain(core, bundle, "fp32", threads, hint="bf16")
    x, _ = bundle.golden()
    image = np.ascontiguousarray(x[:bundle.manifest.input.batch], dtype=np.float32)
    times = interleaved_ms({v: (lambda c=c: run_dag(bundle.manifest, c.variant, c.runners, image))
                            for v, c in chains.items()}, runs, warmup)
    return {v: {"latency_ms": statistics.median(ts), "p90_ms": float(np.percentile(ts, 90)),
                "hint": chains[v].hint, "runs": runs, "threads": threads} for v, ts in times.items()}


PAYS = 0.95  # a variant must take at most this share of fp32's time to replace it (median noise)


def fastest_within_bounds(latency: dict[str, Any], written: list[str]) -> str:
    """The default variant for this host: the fastest written variant (every written variant is
    within every task's bound on val) if it beats fp32 by more than measurement noise, else fp32."""
    timed = [v for v in written if v in latency]
    if "fp32" not in timed:
        return "fp32"
    best = min(timed, key=lambda v: latency[v]["latency_ms"])
    return best if latency[best]["latency_ms"] <= PAYS * latency["fp32"]["latency_ms"] else "fp32"
