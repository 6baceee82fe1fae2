"""Device targets: profiles (targets/*.toml), engine builds (OpenVINO, TensorRT) and latency tables.

Modules: ``profile`` (load/validate profiles), ``plan`` (pure build planning), ``trtexec``
(commands and device scripts), ``tensorrt_builder`` (TensorRT Python API), ``openvino_builder``,
``verify`` (golden I/O checks), ``build`` (orchestration), ``latency`` (tables, roofline).
"""

from toolchain.targets.plan import BuildOptions, BuildPlan, EngineBuildStep, plan_build
from toolchain.targets.profile import TargetError, TargetProfile, list_profiles, load_profile

__all__ = ["BuildOptions", "BuildPlan", "EngineBuildStep", "TargetError", "TargetProfile", "list_profiles",
           "load_profile", "plan_build"]
