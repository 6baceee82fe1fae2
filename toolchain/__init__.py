"""mtedge: multitask networks on Jetson-class edge devices.

The import package is ``toolchain``; the command is ``mtedge``. The library API, one call per
stage, each returning a result object (every `mtedge` command is argument parsing + one of these)::

    toolchain.compress(model, recipe, keep_flops=0.5)   -> CompressResult (.model, .save(), .report())
    toolchain.export_bundle(model, recipe, "m.mtb")      -> ExportResult
    toolchain.quantize_bundle("m.mtb", recipe, ["int8"]) -> quantization report
    toolchain.verify_bundle("m.mtb")                     -> verification report
    toolchain.build("m.mtb", load_profile("host-cpu"))   -> BuildResult
    toolchain.Runtime("m.mtb")                           -> the C++ runtime
"""

from toolchain.version import __version__

# name -> module that defines it; imported on first use so `import toolchain` stays light
_API = {"compress": "toolchain.compression", "export_bundle": "toolchain.export",
        "quantize_bundle": "toolchain.quantize", "verify_bundle": "toolchain.verify", "build": "toolchain.targets.build",
        "load_profile": "toolchain.targets.profile", "load_with_recipe": "toolchain.model", "Runtime": "toolchain.runtime"}

__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'toolchain' has no attribute {name!r}")
