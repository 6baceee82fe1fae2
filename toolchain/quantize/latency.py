"""OpenVINO CPU latency of bundle variants, measured side by side.

Each segment file of a variant is compiled on the CPU plugin with an explicit
INFERENCE_PRECISION_HINT (a CPU with native bf16 would otherwise run bf16): `f32` for fp32 and
int8 variants (the Q/DQ layers run as real int8 kernels through OpenVINO's low-precision
transformations; the rest stays f32), `f16` for fp16 variants. What the plugin then executes is
read back from each compiled model (`executes`): a bf16 or f16 hint silently runs f32 on a CPU
without those instructions, and int8 layers show as u8/i8. The variants' chains (all tasks,
segments in manifest order) run interleaved, one iteration each in turn, so that load from other
processes hits them alike; the figure is the median over `runs` iterations.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

import numpy as np

from toolchain.bundle.executor import request_runner, run_dag, run_tasks
from toolchain.bundle.manifest import Bundle, disagreement
from toolchain.host_latency import openvino_latency_config
from toolchain.timing import interleaved_ms

HINTS = {"fp32": "f32", "int8": "f32", "mixed": "f32", "fp16": "f16"}
STORES = {"fp32": "fp32 weights and activations", "fp16": "fp16 weights and activations (fp32 at the boundaries)",
          "int8": "int8 weights and activations (Q/DQ; layers kept in float stay fp32)"}
# the layers whose arithmetic decides the speed; their runtime precision is what the host executes
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")


class _Chain:
    """A variant's runners compiled at one precision hint, and what the CPU plugin made of them."""

    def __init__(self, core: Any, bundle: Bundle, variant: str, threads: int, hint: str | None = None) -> None:
        precision = bundle.variant(variant).precision
        self.hint = hint or HINTS[precision]
        self.variant = variant
        self.stores = STORES.get(precision, precision)
        cfg = openvino_latency_config(self.hint, threads, NUM_STREAMS=1)
        compiled = {name: core.compile_model(str(bundle.path(seg)), "CPU", cfg)
                    for name, seg in bundle.variant(variant).segments.items()}
        self.runners = {name: request_runner(c) for name, c in compiled.items()}
        self.executes = executed_precision(list(compiled.values()))


def executed_precision(compiled: list[Any]) -> dict[str, Any]:
    """What the CPU plugin runs for compiled models: the inference precision it settled on (a bf16 or
    f16 hint falls back to f32 on a CPU without those instructions) and how many compute layers run in
    each precision (u8/i8 = real int8 kernels), read from each model's execution graph."""
    effective = sorted({c.get_property("INFERENCE_PRECISION_HINT").get_type_name() for c in compiled})
    infos = [op.get_rt_info() for c in compiled for op in c.get_runtime_model().get_ordered_ops()]
    layers = Counter(i["runtimePrecision"].astype(str) for i in infos
                     if "layerType" in i and i["layerType"].astype(str) in COMPUTE_LAYERS)
    return {"inference_precision": "/".join(effective), "compute_layers": dict(sorted(layers.items()))}


def compile_chains(bundle: Bundle, variants: list[str], threads: int) -> dict[str, _Chain]:
    """Each variant's segments compiled as the latency rows run them: compile once, then hand the
    chains to :func:`openvino_agreement` and :func:`measure`."""
    import openvino as ov

    core = ov.Core()
    return {v: _Chain(core, bundle, v, threads) for v in variants}


def openvino_agreement(bundle: Bundle, chain: _Chain) -> dict[str, dict[str, Any]]:
    """The variant's golden samples through OpenVINO's CPU plugin (`chain`, from :func:`compile_chains`),
    per task: the largest error against the golden outputs, the variant's tolerance, and whether it
    is within. onnxruntime defines the variant (its tolerance was measured there); this says whether
    *this host's OpenVINO* computes the same thing (an int8 kernel can saturate or be wrong)."""
    from mtedge_runtime.tolerance import compare

    variant = chain.variant
    x, golden = bundle.golden()
    got = run_tasks(bundle.manifest, variant, chain.runners, x)
    tolerance = bundle.variant(variant).tolerance
    checks = [compare(t, y, golden[t], tolerance[t]) for t, y in got.items()]
    return {c.task: {"max_abs_err": c.max_abs_err, "tolerance": c.tolerance, "passed": c.passed} for c in checks}


BF16_ROW = "fp32@bf16"  # the fp32 files run at the CPU plugin's bf16 precision (its default where native)


def bf16_native() -> bool:
    """Whether this CPU runs bf16 in hardware (OpenVINO's CPU capabilities list BF16); elsewhere
    a bf16 hint falls back to f32 and the fp32@bf16 row is just fp32 again."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def measure(bundle: Bundle, variants: list[str], runs: int = 50, warmup: int = 5, threads: int = 2,
            bf16: bool = False, compiled: dict[str, _Chain] | None = None) -> dict[str, Any]:
    """Median whole-chain latency (ms) per variant, what it stores, its hint and what the host
    executes; with `bf16`, also the fp32 files at the bf16 hint (row ``fp32@bf16``), measured in the
    same loop. The variants take turns within each round and the order rotates between blocks of
    rounds (whoever runs first in a round pays for the others' cache footprint); against fp32, each
    row also gets the median of its per-round ratios and the share of rounds it was faster in.
    `compiled`: chains already compiled at `threads` (:func:`compile_chains`), reused."""
    import openvino as ov

    core = ov.Core()
    chains = {v: (compiled or {}).get(v) or _Chain(core, bundle, v, threads) for v in variants}
    if bf16 and "fp32" in variants:
        chains[BF16_ROW] = _Chain(core, bundle, "fp32", threads, hint="bf16")
    x, _ = bundle.golden()
    image = np.ascontiguousarray(x[:bundle.manifest.input.batch], dtype=np.float32)
    calls = {v: (lambda c=c: run_dag(bundle.manifest, c.variant, c.runners, image)) for v, c in chains.items()}
    order = list(calls)
    times: dict[str, list[float]] = {v: [] for v in order}
    for b in range(len(order)):  # round i of every variant stays round i: the ratios below are paired
        rotated = order[b:] + order[:b]
        block = interleaved_ms({v: calls[v] for v in rotated}, runs // len(order) + (b < runs % len(order)),
                               warmup if b == 0 else 1)
        for v in order:
            times[v] += block[v]
    out = {v: {"latency_ms": statistics.median(ts), "p90_ms": float(np.percentile(ts, 90)),
               "stores": chains[v].stores, "hint": chains[v].hint, "executes": chains[v].executes,
               "runs": len(ts), "threads": threads} for v, ts in times.items()}
    if "fp32" in times:
        for v, ts in times.items():
            ratios = [f / t for f, t in zip(times["fp32"], ts)]
            out[v]["paired_speedup_vs_fp32"] = statistics.median(ratios)
            out[v]["faster_than_fp32_in_rounds"] = sum(r > 1.0 for r in ratios) / len(ratios)
    return out


PAYS = 0.95  # a variant must take at most this share of fp32's time to replace it (median noise)


def runs_lower_precision(entry: dict[str, Any]) -> bool:
    """Whether the host executes this row in something other than fp32: an inference precision
    other than f32, or compute layers in another precision (int8 kernels). A variant that runs the
    same f32 kernels as fp32 (fp16 or bf16 on a CPU without them, int8 with every layer kept in
    float) cannot be faster; any difference measured is noise. Unknown (no ``executes``): False."""
    if not (ex := entry.get("executes")):
        return False
    return ex["inference_precision"] != "f32" or any(p != "f32" for p in ex["compute_layers"])


def fastest_within_bounds(latency: dict[str, Any], written: list[str], passed_over: dict[str, str] | None = None,
                          agreement: dict[str, dict[str, Any]] | None = None) -> str:
    """The default variant for this host: the fastest written variant (every written variant is
    within every task's bound on val) that the host runs in a lower precision than fp32 and that
    beats fp32 by more than measurement noise (median, and round by round when the rounds were
    paired) and whose outputs OpenVINO computes within the variant's tolerance (``agreement[v]``:
    :func:`openvino_agreement`, where measured), else fp32; so the default is never slower than
    fp32 as measured side by side. ``passed_over`` (when given) gets, per other variant, why not."""
    why = passed_over if passed_over is not None else {}
    agreement = agreement or {}
    timed = [v for v in written if v in latency]
    if "fp32" not in timed:
        return "fp32"
    fp32_ms = latency["fp32"]["latency_ms"]
    candidates = []
    for v in [v for v in timed if v != "fp32"]:
        ms = latency[v]["latency_ms"]
        if not runs_lower_precision(latency[v]):
            ex = latency[v].get("executes")
            why[v] = (f"runs the same f32 kernels as fp32 on this host ({ex['inference_precision']} inference "
                      f"precision at the {latency[v].get('hint')} hint)" if ex else "what the host executes is unknown")
        elif disagreement(agreement.get(v, {})):
            why[v] = f"OpenVINO on this host computes it off the reference: {disagreement(agreement[v])}"
        elif ms > PAYS * fp32_ms:
            why[v] = f"{ms:.3f} ms vs fp32 {fp32_ms:.3f} ms: not faster by more than {100 * (1 - PAYS):.0f} %"
        elif latency[v].get("paired_speedup_vs_fp32", math.inf) <= 1.0:
            # the medians of two drifting series can differ while the same rounds say "no faster"
            why[v] = (f"{ms:.3f} ms vs fp32 {fp32_ms:.3f} ms, but round by round {latency[v]['paired_speedup_vs_fp32']:.2f}x "
                      f"(faster in {100 * latency[v].get('faster_than_fp32_in_rounds', 0):.0f} % of rounds)")
        else:
            candidates.append(v)
    best = min(candidates, key=lambda v: latency[v]["latency_ms"], default="fp32")
    for v in candidates:
        if v != best:
            why[v] = f"slower than {best}"
    return best
