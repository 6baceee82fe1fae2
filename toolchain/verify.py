"""Verify a bundle: checksums of every file, then golden I/O through onnxruntime per variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle.manifest import Bundle
from toolchain.bundle.executor import ReferenceExecutor
from mtedge_runtime.tolerance import compare, tolerance_for


def verify_bundle(path: str | Path, variants: list[str] | None = None) -> dict[str, Any]:
    """Per variant and task: max abs error against the fp32 golden outputs (or, for a variant with
    its own ``golden.outputs`` -- slimmable width configurations -- against those), and whether it is
    within the variant's tolerance (mtedge_runtime/tolerance.py: exact shapes and dtypes, tolerance scaled by
    the golden outputs). Raises BundleError (naming the file) on a bad checksum or a shape mismatch."""
    bundle = Bundle.open(path)
    checked = bundle.verify_files()
    names = variants or bundle.variants
    report: dict[str, Any] = {"bundle": str(path), "files_checked": len(checked), "variants": {}, "ok": True}
    for name in names:
        v = bundle.variant(name)
        got, expected = ReferenceExecutor(bundle, name, check_files=False).run_golden()  # verified above
        own = v.golden.outputs if v.golden else {}  # a width configuration's own golden outputs
        expected = {t: np.load(bundle.path(own[t], check=False)) if t in own else e for t, e in expected.items()}
        per_task = {}
        for t in expected:
            c = compare(t, got[t], expected[t], tolerance_for(v, t, expected[t], name))
            per_task[t] = {"max_abs_error": c.max_abs_err, "tolerance": c.tolerance, "ok": c.passed}
            report["ok"] &= c.passed
        report["variants"][name] = per_task
    return report
