"""The one verification rule: how an output is compared with its reference, for every check.

`mtedge verify` (toolchain/verify.py), engine verification at build (toolchain/targets/verify.py),
the tolerances quantization records (toolchain/quantize/variants.py) and the device-side golden
check (mtedge_runtime) all use it; it lives in the device package because a device checks with it:

* shape and dtype must match the reference exactly (no broadcasting, no silent casts);
* any NaN or infinity in the difference fails;
* the error is max |out - reference| over every sample and element;
* the tolerance is relative to the reference's scale, ``scale = max(1, max |reference|)``:
  ``fp32``: 1e-4 * scale, ``fp16``: 1e-2 * scale. A variant's recorded ``tolerance[task]``
  (absolute; quantized variants always record one) overrides the default; quantization records
  ``max(floor * scale, 2 * golden error, worst val error)`` with floor fp16 1e-3, int8/mixed 1e-2.
  A variant with neither (an int8 variant without ``tolerance``) is a damaged bundle: an error,
  never a guessed constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mtedge_runtime.errors import BundleError

RELATIVE = {"fp32": 1e-4, "fp16": 1e-2}
RECORDED_FLOOR = {"fp16": 1e-3, "int8": 1e-2, "mixed": 1e-2}
RECORDED_MARGIN = 2.0


@dataclass(frozen=True)
class Check:
    task: str
    max_abs_err: float
    tolerance: float
    passed: bool


def output_scale(reference: np.ndarray) -> float:
    """``max(1, max |reference|)``: the magnitude tolerances are relative to."""
    ref = np.asarray(reference)
    finite = np.abs(ref[np.isfinite(ref)]) if ref.size else np.zeros(0)
    return max(1.0, float(finite.max()) if finite.size else 1.0)


def tolerance_for(variant: Any, task: str, reference: np.ndarray, name: str = "?") -> float:
    """Absolute tolerance for `task`'s output of a manifest variant (a typed
    :class:`mtedge_runtime.manifest.Variant`, or its JSON entry); see the module docstring."""
    if isinstance(variant, Mapping):
        recorded, precision = variant.get("tolerance"), variant.get("precision", "")
    else:
        recorded, precision = variant.tolerance, variant.precision
    explicit = (recorded or {}).get(task)
    if explicit is not None:
        return float(explicit)
    rel = RELATIVE.get(precision)
    if rel is None:
        raise BundleError(f"variant {name!r} ({precision}) records no tolerance for task {task!r}; "
                          f"the quantizer writes variants.{name}.tolerance: re-quantize the bundle")
    return rel * output_scale(reference)


def recorded_tolerance(precision: str, reference: np.ndarray | None, golden_error: float, val_error: float = 0.0) -> float:
    """What quantization records as ``tolerance[task]`` (3 significant digits)."""
    scale = output_scale(reference) if reference is not None else 1.0
    tol = max(RECORDED_FLOOR[precision] * scale, RECORDED_MARGIN * golden_error, val_error)
    return float(np.format_float_positional(tol, precision=3, unique=False, fractional=False, trim="-"))


def compare(task: str, got: np.ndarray, reference: np.ndarray, tolerance: float) -> Check:
    """Exact shape and dtype, then max abs error within `tolerance` (NaN/inf never pass)."""
    got, reference = np.asarray(got), np.asarray(reference)
    if got.shape != reference.shape:
        raise BundleError(f"task {task!r}: output shape {list(got.shape)} differs from the reference's "
                          f"{list(reference.shape)}; the bundle's files disagree with its golden outputs: re-export it")
    if got.dtype != reference.dtype:
        raise BundleError(f"task {task!r}: output dtype {got.dtype} differs from the reference's {reference.dtype}; "
                          "task outputs are float32 at the boundary (docs/bundle-format.md): re-export the bundle")
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    err = float(diff.max()) if diff.size else 0.0
    if not np.all(np.isfinite(diff)):
        err = float("inf")
    return Check(task, err, float(tolerance), bool(np.isfinite(err) and err <= tolerance))
