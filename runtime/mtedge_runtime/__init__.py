"""mtedge-runtime: the device half of mtedge (numpy is its only Python dependency).

    from mtedge_runtime import Runtime
    rt = Runtime("model.mtb")                       # verify, compile, allocate: once
    out = rt.run(frame, tasks=["seg", "depth"])     # the shared trunk runs once for both

The C++ core (``mtedge_runtime._runtime``, OpenVINO and/or TensorRT backends chosen when it was
built) is wrapped by :class:`Runtime`; errors derive from :class:`mtedge_runtime.errors.MtedgeError`.
The host toolchain (``mtedge``, import name ``toolchain``) depends on this package, never the reverse.
"""

__version__ = "0.1.0"

from mtedge_runtime import runtime as _runtime_api  # noqa: E402
from mtedge_runtime.errors import BundleError, MtedgeError  # noqa: E402
from mtedge_runtime.runtime import *  # noqa: E402,F401,F403  the names runtime.__all__ lists

__all__ = [*_runtime_api.__all__, "MtedgeError", "BundleError", "__version__"]
