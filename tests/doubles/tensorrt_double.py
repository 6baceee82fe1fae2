"""The runtime's TensorRT backend through the link-time TensorRT/CUDA test double, from Python.

``make test-cpp`` / ``make test-tensorrt-double`` build ``mtedge_runtime._runtime``'s binding once more,
linked against the fake libnvinfer + libcudart (tests/tensorrt_double), into
``build/cpp/tensorrt-double/trt10/python/`` (override: ``$MTEDGE_TRT_DOUBLE_PY``). This module
loads that build beside the installed one and opens ``mtedge_runtime.Runtime`` objects on it,
so one test body runs on both backends. Engines come from the fake ``tensorrt`` Python module
(the same file format the fake libnvinfer reads).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from unittest import mock

import mtedge_runtime.runtime
from mtedge_runtime import _runtime

from doubles.fake_tensorrt import make_fake_tensorrt

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "build" / "cpp" / "tensorrt-double" / "trt10" / "python"
TENSORRT_VERSION = "10.3.0"  # the header set the module above is built against (JetPack 6)
TARGET = "jetson-agx-orin-64gb"
_loaded: ModuleType | None = None


def module_dir() -> Path:
    return Path(os.environ.get("MTEDGE_TRT_DOUBLE_PY") or DEFAULT_DIR)


def double_module() -> ModuleType | None:
    """The binding linked against the double, or None when it has not been built."""
    global _loaded
    if _loaded is None:
        found = sorted(module_dir().glob("_runtime*.so"))
        if not found:
            return None
        # The last name component must be "_runtime": it selects the PyInit symbol.
        spec = importlib.util.spec_from_file_location("mtedge_tensorrt_double._runtime", found[0])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _loaded = mod
    return _loaded


def skip_reason() -> str:
    return (f"TensorRT double binding not built in {module_dir()} (needs the TensorRT/CUDA headers; "
            "run `make test-tensorrt-double` or set MTEDGE_TRT_DOUBLE_PY)")


def native(backend: str) -> ModuleType:
    """The native module a backend's runtime comes from (its error classes are its own)."""
    return double_module() if backend == "tensorrt" else _runtime


def open_runtime(bundle: str | os.PathLike, backend: str, **kwargs) -> mtedge_runtime.runtime.Runtime:
    """``mtedge_runtime.Runtime(bundle, backend=backend, **kwargs)`` on the native module of
    that backend (the double's for "tensorrt")."""
    mod = native(backend)
    with mock.patch.object(mtedge_runtime.runtime, "_runtime", mod):
        return mtedge_runtime.runtime.Runtime(bundle, backend=backend, **kwargs)


def add_engines(bundle: Path) -> None:
    """Build the bundle's TensorRT engines in place with the fake ``tensorrt`` module (the real
    ``mtedge build`` code path), as tests/tensorrt_double/make_engines.py does for ctest."""
    from toolchain.targets import build as b
    from toolchain.targets.plan import BuildOptions
    from toolchain.targets.profile import load_profile

    with mock.patch.dict(sys.modules, {"tensorrt": make_fake_tensorrt(TENSORRT_VERSION)}):
        b.build(bundle, load_profile(TARGET), BuildOptions())
