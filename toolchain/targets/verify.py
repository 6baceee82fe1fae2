"""Check built engines against the bundle's golden I/O by running the segment DAG.

Comparison and tolerances: the one rule in mtedge_runtime/tolerance.py (exact shapes and dtypes;
fp32 1e-4 and fp16 1e-2 times max(1, max |golden|); a variant's recorded ``tolerance[task]``
overrides; a quantized variant without one is an error).

Reference: the golden outputs are those of the full model, so they are the reference for variants
without a width configuration (``config: null``). A variant with a width configuration (slimmable
or pruned widths) computes something else by design; its engines are compared with the variant's
own ONNX files run in onnxruntime on the golden inputs (same tolerances).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mtedge_runtime import tolerance
from mtedge_runtime.tolerance import Check
from toolchain.bundle.executor import Runner, onnxruntime_runners, run_tasks
from toolchain.bundle.manifest import Bundle, Manifest


def reference_kind(manifest: Manifest, variant: str) -> str:
    """``"golden"`` or ``"onnxruntime"`` (width-configured variants; see the module docstring)."""
    return "onnxruntime" if manifest.variant(variant).config else "golden"


def verify_variant(bundle: Path, manifest: Manifest, variant: str, runners: Mapping[str, Runner]) -> list[Check]:
    """Run every golden sample through ``runners`` and compare each task's output with the reference
    (golden outputs, or onnxruntime on the variant's ONNX for width-configured variants)."""
    b, v = Bundle(Path(bundle), manifest), manifest.variant(variant)
    x, golden = b.golden()
    if v.config:
        golden = run_tasks(manifest, variant, onnxruntime_runners(b, variant), x)
    return [tolerance.compare(task, got, golden[task], tolerance.tolerance_for(v, task, golden[task], variant))
            for task, got in run_tasks(manifest, variant, runners, x).items() if task in golden]


def report(checks: list[Check], samples: int, reference: str = "golden") -> dict[str, Any]:
    """JSON-able verification record for the manifest's ``engines`` entry."""
    return {"status": "passed" if all(c.passed for c in checks) else "failed", "samples": samples,
            "reference": reference,
            "tasks": {c.task: {"max_abs_err": c.max_abs_err, "tolerance": c.tolerance, "passed": c.passed}
                      for c in checks}}
