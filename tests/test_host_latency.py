"""Host latency is measured one way: every OpenVINO configuration for it comes from toolchain.host_latency."""

from __future__ import annotations

from pathlib import Path

import toolchain
from toolchain.host_latency import openvino_latency_config


def test_the_configuration_fixes_precision_and_the_latency_hint():
    assert openvino_latency_config() == {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    assert openvino_latency_config("f16", 2, NUM_STREAMS=1) == {
        "INFERENCE_PRECISION_HINT": "f16", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1}


def test_no_other_module_spells_the_latency_hint():
    pkg = Path(toolchain.__file__).parent
    spelled = [p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py") if '"PERFORMANCE_HINT"' in p.read_text()]
    assert spelled == ["host_latency.py"], f"{spelled}: configure OpenVINO for latency with openvino_latency_config"
