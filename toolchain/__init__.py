"""mtedge: multitask networks on Jetson-class edge devices.

The import package is ``toolchain``; the command is ``mtedge``.
"""

__version__ = "0.1.0"

__all__ = ["Runtime", "__version__"]


def __getattr__(name: str):
    # `toolchain.Runtime` without importing the C++ extension for every `import toolchain`
    if name == "Runtime":
        from toolchain.runtime import Runtime

        return Runtime
    raise AttributeError(f"module 'toolchain' has no attribute {name!r}")
