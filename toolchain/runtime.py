"""The C++ runtime as the host toolchain sees it: the device package's ``mtedge_runtime.Runtime``.

The runtime is its own distribution (``mtedge-runtime``, built from runtime/) so that a device
installs it without the host toolchain; this module only re-exports it (docs/device.md)."""

from mtedge_runtime.runtime import *  # noqa: F401,F403  re-exported, names listed once there
from mtedge_runtime.runtime import __all__  # noqa: F401
