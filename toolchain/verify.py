"""Verify a bundle: checksums of every file, then golden I/O through onnxruntime per variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle.manifest import Bundle
from toolchain.bundle.reference import ReferenceExecutor

DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2, "int8": 0.5, "mixed": 0.5}


def verify_bundle(path: str | Path, variants: list[str] | None = None) -> dict[str, Any]:
    """Per variant and task: max abs error against the fp32 golden outputs (or, for a variant with
    its own ``golden.outputs`` -- slimmable width configurations -- against those), and whether it is
    within the variant's tolerance. Raises BundleError (naming the file) on a bad checksum."""
    bundle = Bundle.open(path)
    checked = bundle.verify_files()
    names = variants or bundle.variants
    report: dict[str, Any] = {"bundle": str(path), "files_checked": len(checked), "variants": {}, "ok": True}
    for name in names:
        v = bundle.variant(name)
        got, expected = ReferenceExecutor(bundle, name, check_files=False).run_golden()  # verified above
        own = v.get("golden", {}).get("outputs", {})  # a width configuration's own golden outputs
        expected = {t: np.load(bundle.path(own[t], check=False)) if t in own else e for t, e in expected.items()}
        per_task = {}
        for t in expected:
            err = float(np.max(np.abs(got[t] - expected[t])))
            tol = float(v.get("tolerance", {}).get(t, DEFAULT_TOLERANCE[v["precision"]]))
            ok = bool(np.isfinite(err) and err <= tol)
            per_task[t] = {"max_abs_error": err, "tolerance": tol, "ok": ok}
            report["ok"] &= ok
        report["variants"][name] = per_task
    return report
