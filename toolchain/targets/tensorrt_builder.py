"""Engines through the TensorRT Python API (on the device, where ``import tensorrt`` works).

TensorRT 10: weakly typed networks take precision from builder flags (FP16/INT8), TF32 is
cleared for fp32 parity; ``strongly_typed`` networks take it from the ONNX.
TensorRT >= 11: strongly typed only (no FP16/INT8 flags, STRONGLY_TYPED creation flag deprecated
and implied), no DLA.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from toolchain.bundle.files import write_bytes_atomic
from toolchain.targets.plan import BuildPlan, EngineBuildStep
from toolchain.targets.profile import TargetError, tensorrt_major


def import_tensorrt() -> ModuleType | None:
    """The ``tensorrt`` module, or None when it is not installed (as on hosts without a GPU)."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        return None


def _network_flags(trt: ModuleType, step: EngineBuildStep) -> int:
    if step.strongly_typed and tensorrt_major(trt.__version__) < 11:  # >= 11: always strongly typed, no flag
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def build_engine(trt: ModuleType, step: EngineBuildStep, bundle: Path, out: Path,
                 timing_cache: bytes, logger: Any) -> bytes:
    """Build one engine into ``out`` (atomically). Returns the updated serialized timing cache."""
    major = tensorrt_major(trt.__version__)
    if major >= 11 and (step.dla_core is not None or set(step.builder_flags) & {"FP16", "INT8"}):
        raise TargetError(f"TensorRT {trt.__version__} is strongly typed only and has no DLA; "
                          "re-plan with the TensorRT version in use (mtedge build does this)")
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, step))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle / step.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TargetError(f"TensorRT could not parse {step.onnx}: {errors or 'no details'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(step.workspace_mb or 1024) << 20)
    for flag in step.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if not step.tf32:  # fp32 layers stay IEEE fp32 (golden parity at 1e-4)
        config.clear_flag(trt.BuilderFlag.TF32)
    if step.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(step.dla_core)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    cache = config.create_timing_cache(timing_cache)
    if not config.set_timing_cache(cache, False):
        raise TargetError("TensorRT rejected the timing cache; delete engines/<target>/timing.cache and retry")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TargetError(f"TensorRT failed to build segment {step.segment!r} of variant {step.variant!r} "
                          "(see the TensorRT log above)")
    write_bytes_atomic(out, memoryview(serialized))
    return bytes(memoryview(config.get_timing_cache().serialize()))


def build_plan_python_api(trt: ModuleType, plan: BuildPlan, bundle: Path, staging: Path,
                          on_step: Callable[[EngineBuildStep], None] = lambda s: None) -> dict[str, Path]:
    """Build every step of ``plan`` into ``staging``; one timing cache shared across steps and kept
    in ``staging/<timing_cache>``. Returns {engine_path: built file}."""
    logger = trt.Logger(trt.Logger.WARNING)
    built: dict[str, Path] = {}
    cache_rel = next((s.timing_cache for s in plan.steps if s.timing_cache), None)
    cache_blob = (bundle / cache_rel).read_bytes() if cache_rel and (bundle / cache_rel).is_file() else b""
    for step in plan.steps:
        out = staging / step.engine_path
        cache_blob = build_engine(trt, step, bundle, out, cache_blob, logger)
        built[step.engine_path] = out
        on_step(step)
    if cache_rel:
        write_bytes_atomic(staging / cache_rel, cache_blob)
    return built
