"""TEST DOUBLE of the ``tensorrt`` Python module (TensorRT cannot be installed on the test machine).

``make_fake_tensorrt(version)`` returns a module object with the TensorRT 10 / 11 Python API
surface the builder uses. Every call is appended to ``module.calls`` as ``(name, args)``, and
misuse fails the way it matters: building before parsing, precision flags on TensorRT 11 (the
enum members do not exist there, as in its NvInfer.h), DLA settings without DLA on TensorRT 11,
precision flags on a strongly typed TensorRT 10 network, a non-int workspace size.
Inject it with ``monkeypatch.setitem(sys.modules, "tensorrt", fake)``.

``build_serialized_network`` returns a real fake-engine file (fake_engine.py: the segment's ONNX
plus a header naming this TensorRT version), which the fake libnvinfer under
tests/tensorrt_double/ deserializes and runs: engines "built" here run in the C++ runtime.
"""

from __future__ import annotations

import enum
import types
from pathlib import Path
from typing import Any

from doubles.fake_engine import engine_bytes


class FakeTensorRTError(AssertionError):
    """The code under test used the API in a way real TensorRT rejects."""


def make_fake_tensorrt(version: str = "10.3.0", *, parse_ok: bool = True, build_ok: bool = True) -> types.ModuleType:
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__doc__ = "TEST DOUBLE of tensorrt"
    calls: list[tuple[str, Any]] = []
    trt.calls = calls

    severity_enum = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})

    class Logger:
        Severity = severity_enum
        WARNING = severity_enum.WARNING
        ERROR = severity_enum.ERROR

        def __init__(self, severity: Any = severity_enum.WARNING) -> None:
            calls.append(("Logger", severity))

    # enums as in NvInfer.h of each version
    bf = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7}
    if major < 11:
        bf.update(FP16=0, INT8=1)
        nf = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    else:
        nf = {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1}
    BuilderFlag = enum.IntEnum("BuilderFlag", bf)
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", nf)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1, "DLA_LOCAL_DRAM": 2,
                                                     "DLA_GLOBAL_DRAM": 3, "TACTIC_DRAM": 4})
    DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})
    ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})

    class HostMemory(bytes):
        """IHostMemory: real TensorRT exposes the buffer protocol; a bytes subclass does on Python 3.11."""

        @property
        def nbytes(self) -> int:
            return len(self)

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.entries = blob

        def serialize(self) -> HostMemory:
            return HostMemory(self.entries)

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.parsed: str | None = None
            self.strongly_typed = major >= 11 or bool(flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            calls.append(("OnnxParser", None))
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            calls.append(("parse_from_file", path))
            if not Path(path).is_file():
                self.num_errors = 1
                return False
            self.network.parsed = path
            if not parse_ok:
                self.num_errors = 1
            return parse_ok

        def get_error(self, i: int) -> str:
            return f"fake parser error {i}"

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags = {BuilderFlag.TF32}  # TF32 is on by default
            self.pools: dict[Any, int] = {}
            self._default_device_type = DeviceType.GPU
            self._dla_core = -1
            self.cache: TimingCache | None = None
            self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            if not isinstance(size, int) or size <= 0:
                raise FakeTensorRTError(f"set_memory_pool_limit needs a positive int, got {size!r}")
            calls.append(("set_memory_pool_limit", (pool.name, size)))
            self.pools[pool] = size

        def set_flag(self, flag: Any) -> None:
            calls.append(("set_flag", flag.name))
            self.flags.add(flag)

        def clear_flag(self, flag: Any) -> None:
            calls.append(("clear_flag", flag.name))
            self.flags.discard(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self.flags

        @property
        def default_device_type(self) -> Any:
            return self._default_device_type

        @default_device_type.setter
        def default_device_type(self, value: Any) -> None:
            if major >= 11:
                raise FakeTensorRTError("TensorRT 11.0-11.3 has no DLA")
            calls.append(("default_device_type", value.name))
            self._default_device_type = value

        @property
        def DLA_core(self) -> int:  # noqa: N802 (TensorRT's spelling)
            return self._dla_core

        @DLA_core.setter
        def DLA_core(self, value: int) -> None:  # noqa: N802
            calls.append(("DLA_core", value))
            self._dla_core = value

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            calls.append(("create_timing_cache", len(bytes(blob))))
            return TimingCache(bytes(blob))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            calls.append(("set_timing_cache", ignore_mismatch))
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.cache or TimingCache(b"")

    class Builder:
        def __init__(self, logger: Logger) -> None:
            calls.append(("Builder", None))
            self.platform_has_fast_fp16 = True
            self.num_DLA_cores = 0 if major >= 11 else 2

        def create_network(self, flags: int = 0) -> Network:
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            calls.append(("create_builder_config", None))
            return BuilderConfig()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> HostMemory | None:
            calls.append(("build_serialized_network", sorted(f.name for f in config.flags)))
            if network.parsed is None:
                raise FakeTensorRTError("build_serialized_network before a successful parse")
            if network.strongly_typed and {f.name for f in config.flags} & {"FP16", "INT8"}:
                raise FakeTensorRTError("precision flags are not allowed on a strongly typed network")
            if config.default_device_type == DeviceType.DLA:
                if not {f.name for f in config.flags} & {"FP16", "INT8"} and not network.strongly_typed:
                    raise FakeTensorRTError("DLA needs FP16 or INT8")
                if config.DLA_core < 0:
                    raise FakeTensorRTError("DLA device without DLA_core")
            if BuilderFlag.__members__.get("FP16") is None and not network.strongly_typed:
                raise FakeTensorRTError("TensorRT 11 networks are strongly typed")
            if not build_ok:
                return None
            assert config.cache is not None, "timing cache not set"
            config.cache.entries += b"tactic;"
            onnx_path = Path(network.parsed)
            return HostMemory(engine_bytes(onnx_path.read_bytes(), version, onnx_path.stem))

    for name, obj in dict(Logger=Logger, Builder=Builder, OnnxParser=OnnxParser, BuilderFlag=BuilderFlag,
                          NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag, MemoryPoolType=MemoryPoolType,
                          DeviceType=DeviceType, ProfilingVerbosity=ProfilingVerbosity).items():
        setattr(trt, name, obj)
    return trt
