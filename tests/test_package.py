"""The installed package: extension, pins, console script."""

import json
import subprocess
import sys
from pathlib import Path

import openvino

from cli_helpers import mtedge


def test_extension_imports_without_openvino_imported_first():
    # the install rpath must find OpenVINO's libs on its own
    code = "import sys, mtedge_runtime._runtime as r; assert 'openvino' not in sys.modules; print(r.self_check()['openvino_version'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("2026.4.1")


def test_extension_built_against_the_runtime_openvino():
    from mtedge_runtime import _runtime

    info = _runtime.self_check()
    assert info["openvino_version"].split("-")[0] == openvino.__version__.split("-")[0]
    assert "CPU" in info["openvino_devices"]


def test_console_script_lists_commands_and_doctor_reports_json():
    out = mtedge("--help").stdout
    for cmd in ("train", "inspect", "export", "verify", "doctor"):
        assert cmd in out
    doc = json.loads(mtedge("doctor", "--json").stdout)
    assert doc["mtedge_version"] == "0.1.0"


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert not torch.cuda.is_available()


def test_runtime_is_exported_at_the_top_level():
    import toolchain
    from toolchain.runtime import Runtime

    assert toolchain.Runtime is Runtime


def test_the_wheel_holds_the_product_only():
    """Test architectures and toy bundles live under tests/ (tests/support), not in the package."""
    import toolchain

    pkg = Path(toolchain.__file__).parent
    assert not (pkg / "testing").exists()
    assert (pkg / "zoo" / "fashion_mt.py").exists()  # zoo models are product: `zoo:NAME` on the CLI
