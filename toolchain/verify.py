"""Verify a bundle: checksums of every file, then golden I/O through onnxruntime per variant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle.manifest import Bundle
from toolchain.bundle.executor import ReferenceExecutor
from mtedge_runtime.tolerance import compare, tolerance_for


@dataclass(frozen=True)
class TaskResult:
    """One task of one variant: its max abs error against the reference and the tolerance it had."""

    max_abs_error: float
    tolerance: float
    ok: bool


@dataclass
class VerifyReport:
    """What :func:`verify_bundle` found; ``ok`` only when every task of every variant is within tolerance."""

    bundle: str
    files_checked: int
    variants: dict[str, dict[str, TaskResult]]  # variant -> task -> result
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON document `mtedge verify --json` writes."""
        return dataclasses.asdict(self)


def verify_bundle(path: str | Path, variants: list[str] | None = None) -> VerifyReport:
    """Per variant and task: max abs error against the fp32 golden outputs (or, for a variant with
    its own ``golden.outputs`` -- slimmable width configurations -- against those), and whether it is
    within the variant's tolerance (mtedge_runtime/tolerance.py: exact shapes and dtypes, tolerance scaled by
    the golden outputs). Raises BundleError (naming the file) on a bad checksum or a shape mismatch."""
    bundle = Bundle.open(path)
    checked = bundle.verify_files()
    results: dict[str, dict[str, TaskResult]] = {}
    for name in variants or bundle.variants:
        v = bundle.variant(name)
        got, expected = ReferenceExecutor(bundle, name, check_files=False).run_golden()  # verified above
        own = v.golden.outputs if v.golden else {}  # a width configuration's own golden outputs
        expected = {t: np.load(bundle.path(own[t], check=False)) if t in own else e for t, e in expected.items()}
        checks = {t: compare(t, got[t], e, tolerance_for(v, t, e, name)) for t, e in expected.items()}
        results[name] = {t: TaskResult(c.max_abs_err, c.tolerance, c.passed) for t, c in checks.items()}
    ok = all(r.ok for tasks in results.values() for r in tasks.values())
    return VerifyReport(str(path), len(checked), results, ok)
