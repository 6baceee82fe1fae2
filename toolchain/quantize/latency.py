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
import time
from typing import Any

import numpy as np

from toolchain.bundle.manifest import Bundle

HINTS = {"fp32": "f32", "int8": "f32", "mixed": "f32", "fp16": "f16"}


class _Chain:
    def __init__(self, core: Any, bundle: Bundle, variant: str, threads: int) -> None:
        v = bundle.variant(variant)
        self.hint = HINTS[v["precision"]]
        self.segments = bundle.manifest["segments"]
        self.requests = {}
        for name, seg in v["segments"].items():
            cfg = {"INFERENCE_PRECISION_HINT": self.hint, "INFERENCE_NUM_THREADS": threads,
                   "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
            compiled = core.compile_model(str(bundle.path(seg)), "CPU", cfg)
            self.requests[name] = (compiled.create_infer_request(), [o.get_any_name() for o in compiled.outputs],
                                   compiled.outputs)

    def run(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, (req, out_names, outs) in self.requests.items():
            res = req.infer({t: values[t] for t in self.segments[name]["inputs"]})
            for n, port in zip(out_names, outs):
                values[n] = res[port]
        return values


def measure(bundle: Bundle, variants: list[str], runs: int = 50, warmup: int = 5, threads: int = 2) -> dict[str, Any]:
    """Median whole-chain latency (ms) per variant and the hint each was compiled with."""
    import openvino as ov

    core = ov.Core()
    chains = {v: _Chain(core, bundle, v, threads) for v in variants}
    x, _ = bundle.golden()
    batch = bundle.manifest["input"]["shape"][0]
    image = np.ascontiguousarray(x[:batch], dtype=np.float32)
    name = bundle.manifest["input"]["name"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(warmup + runs):
        for v, chain in chains.items():
            t0 = time.perf_counter()
            chain.run({name: image})
            if i >= warmup:
                times[v].append((time.perf_counter() - t0) * 1e3)
    return {v: {"latency_ms": statistics.median(ts), "p90_ms": float(np.percentile(ts, 90)),
                "hint": chains[v].hint, "runs": runs, "threads": threads} for v, ts in times.items()}
