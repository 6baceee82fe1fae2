"""The one verification rule (mtedge_runtime/tolerance.py) as every verifier applies it."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.errors import BundleError
from toolchain.quantize.evaluation import max_abs_errors
from toolchain.quantize.variants import tolerances
from mtedge_runtime.tolerance import compare, output_scale, recorded_tolerance, tolerance_for


def test_shapes_and_dtypes_must_match_exactly():
    ref = np.zeros((4, 10), np.float32)
    with pytest.raises(BundleError, match=r"task 'cls': output shape \[1, 10\] differs .* \[4, 10\]"):
        compare("cls", np.zeros((1, 10), np.float32), ref, 1.0)  # numpy would broadcast this
    with pytest.raises(BundleError, match="output dtype float64 differs"):
        compare("cls", np.zeros((4, 10)), ref, 1.0)
    with pytest.raises(BundleError, match="differs from the reference"):
        max_abs_errors({"cls": np.zeros((1, 10))}, {"cls": ref})


def test_nan_and_inf_never_pass():
    ref = np.zeros((2, 3), np.float32)
    for bad in (np.nan, np.inf):
        got = ref.copy()
        got[1, 2] = bad
        c = compare("t", got, ref, 1e30)
        assert not c.passed and c.max_abs_err == float("inf")
    assert compare("t", ref + 1e-5, ref, 1e-4).passed


def test_default_tolerance_scales_with_the_golden_outputs():
    small, big = np.full((2, 2), 0.5, np.float32), np.full((2, 2), 300.0, np.float32)
    assert output_scale(small) == 1.0 and output_scale(big) == 300.0
    assert tolerance_for({"precision": "fp32"}, "t", small) == pytest.approx(1e-4)
    assert tolerance_for({"precision": "fp32"}, "t", big) == pytest.approx(3e-2)
    assert tolerance_for({"precision": "fp16"}, "t", big) == pytest.approx(3.0)
    assert tolerance_for({"precision": "int8", "tolerance": {"t": 0.25}}, "t", big) == 0.25
    with pytest.raises(BundleError, match="variant 'int8' .* records no tolerance for task 't'"):
        tolerance_for({"precision": "int8"}, "t", big, "int8")


def test_every_verifier_uses_the_same_numbers():
    golden = np.full((3, 4), 50.0, np.float32)
    # quantization records the floor scaled by the golden outputs, or the errors it measured
    assert tolerances("int8", {"t": 1e-4}, {}, {"t": golden}) == {"t": recorded_tolerance("int8", golden, 1e-4)} == {"t": 0.5}
    assert tolerances("int8", {"t": 0.3}, {"t": 0.9}) == {"t": 0.9}
    assert tolerances("fp16", {"t": 0.0}, {}) == {"t": 1e-3}
