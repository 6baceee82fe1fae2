"""Check built engines against the bundle's golden I/O by running the segment DAG.

Comparison and tolerances: the one rule in toolchain/tolerance.py (exact shapes and dtypes;
fp32 1e-4 and fp16 1e-2 times max(1, max |golden|); a variant's recorded ``tolerance[task]``
overrides; a quantized variant without one is an error).

Reference: the golden outputs are those of the full model, so they are the reference for variants
without a width configuration (``config: null``). A variant with a width configuration (slimmable
or pruned widths) computes something else by design; its engines are compared with the variant's
own ONNX files run in onnxruntime on the golden inputs (same tolerances).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from toolchain import tolerance
from toolchain.errors import BundleError
from toolchain.targets.bundle_io import check_file, topo_segments
from toolchain.tolerance import Check

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


TaskCheck = Check  # one record type for every verification


def load_golden(bundle: Path, manifest: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(inputs [samples, ...], {task: outputs [samples, ...]}) after checking sha256 and size."""
    g = manifest["golden"]
    x = np.load(check_file(bundle, g["input"]))
    outs = {}
    for task, ref in g["outputs"].items():
        outs[task] = np.load(check_file(bundle, ref))
    return x, outs


def reference_kind(manifest: dict[str, Any], variant: str) -> str:
    """``"golden"`` or ``"onnxruntime"`` (width-configured variants; see the module docstring)."""
    return "onnxruntime" if manifest["variants"][variant].get("config") else "golden"


def tolerance_for(manifest: dict[str, Any], variant: str, task: str, golden: np.ndarray) -> float:
    """Absolute tolerance for ``task``'s output of ``variant`` (toolchain/tolerance.py)."""
    return tolerance.tolerance_for(manifest["variants"][variant], task, golden, variant)


def run_dag(manifest: dict[str, Any], variant: str, runners: Mapping[str, Runner], x: np.ndarray) -> dict[str, np.ndarray]:
    """Run one sample (batch as in the manifest) through every segment; returns all named tensors.

    Tensors are cast to the dtype each segment file declares (fp16 variants pass float16 between
    segments) and task outputs are returned as float32.
    """
    env: dict[str, np.ndarray] = {manifest["input"]["name"]: x.astype(np.float32)}
    vsegs = manifest["variants"][variant]["segments"]
    for seg in topo_segments(manifest):
        spec = vsegs[seg]
        feeds = {t["name"]: np.ascontiguousarray(env[t["name"]].astype(t["dtype"])) for t in spec["inputs"]}
        outs = runners[seg](feeds)
        for t in spec["outputs"]:
            if t["name"] not in outs:
                raise BundleError(f"segment {seg!r} of variant {variant!r} produced no tensor {t['name']!r}; "
                                  f"it produced {', '.join(outs)}")
            env[t["name"]] = np.asarray(outs[t["name"]])
    return env


def onnxruntime_runners(bundle: Path, manifest: dict[str, Any], variant: str) -> dict[str, Runner]:
    """Runners over a variant's ONNX files in onnxruntime (the independent reference executor)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    runners: dict[str, Runner] = {}
    for seg in topo_segments(manifest):
        spec = manifest["variants"][variant]["segments"][seg]
        sess = ort.InferenceSession(str(check_file(bundle, spec)), opts, providers=["CPUExecutionProvider"])
        names = [t["name"] for t in spec["outputs"]]
        runners[seg] = lambda feeds, sess=sess, names=names: dict(zip(names, sess.run(names, feeds)))
    return runners


def _outputs(manifest: dict[str, Any], variant: str, runners: Mapping[str, Runner], x: np.ndarray) -> dict[str, np.ndarray]:
    batch = manifest["input"]["shape"][0]
    per_task: dict[str, list[np.ndarray]] = {t: [] for t in manifest["tasks"]}
    for i in range(0, x.shape[0], batch):
        env = run_dag(manifest, variant, runners, x[i:i + batch])
        for task, tdata in manifest["tasks"].items():
            per_task[task].append(env[tdata["output"]].astype(np.float32))
    return {t: np.concatenate(v) for t, v in per_task.items()}


def verify_variant(bundle: Path, manifest: dict[str, Any], variant: str, runners: Mapping[str, Runner]) -> list[TaskCheck]:
    """Run every golden sample through ``runners`` and compare each task's output with the reference
    (golden outputs, or onnxruntime on the variant's ONNX for width-configured variants)."""
    x, golden = load_golden(bundle, manifest)
    if manifest["variants"][variant].get("config"):
        golden = _outputs(manifest, variant, onnxruntime_runners(bundle, manifest, variant), x)
    got_all = _outputs(manifest, variant, runners, x)
    checks = []
    for task, got in got_all.items():
        if task not in golden:
            continue
        ref = golden[task]
        checks.append(tolerance.compare(task, got, ref, tolerance_for(manifest, variant, task, ref)))
    return checks


def report(checks: list[TaskCheck], samples: int, reference: str = "golden") -> dict[str, Any]:
    """JSON-able verification record for the manifest's ``engines`` entry."""
    return {"status": "passed" if all(c.passed for c in checks) else "failed", "samples": samples,
            "reference": reference,
            "tasks": {c.task: {"max_abs_err": c.max_abs_err, "tolerance": c.tolerance, "passed": c.passed}
                      for c in checks}}
