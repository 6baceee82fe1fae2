"""Python face of the C++ runtime (``mtedge_runtime._runtime``).

    from mtedge_runtime import Runtime
    rt = Runtime("fashion-mt.mtb")                 # verify, compile, allocate: once
    rt.run(x, task="garment")                      # {"garment": array}
    rt.run(x, tasks=["garment", "silhouette"])     # trunk runs once for both

Load once: every segment file's size and sha256 are checked, every segment of the loaded
variant(s) is compiled, every infer request and boundary tensor is created. After that,
``run`` neither compiles nor reads files nor allocates tensors inside the runtime; changing
the task set (or the loaded variant) costs nothing but the segments it needs.

Inputs: a C-contiguous ``float32`` array of exactly ``input_spec()["shape"]`` is handed to
the backend without a copy (OpenVINO reads it in place); anything else raises ``ValueError``
(``mtedge_runtime._runtime.InputError``) naming the input, the expected and the given dtype/shape.
No silent conversion happens: convert with ``np.ascontiguousarray(x, dtype=np.float32)``.

Outputs: fresh numpy arrays per call, owned by the caller (safe to keep and modify).

Threads: one ``Runtime`` may be shared by several threads. Calls are serialized by one mutex
per Runtime (the GIL is released while it runs); use one Runtime per thread for parallelism.
``close()`` (or leaving a ``with Runtime(...) as rt:`` block) frees every compiled segment at
once; a call in progress finishes first, and any later call, from any thread, raises
``InputError`` saying the runtime is closed.

Errors (all subclasses of ``mtedge_runtime.errors.MtedgeError``, from ``mtedge_runtime._runtime``):
``BundleFileNotFoundError`` (FileNotFoundError), ``BundleIntegrityError`` and
``BundleFormatError`` (ValueError), ``InputError`` (ValueError), ``UnknownNameError``
(KeyError: unknown task/variant), ``BackendError`` (RuntimeError).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from mtedge_runtime import _runtime
from mtedge_runtime._runtime import (  # noqa: F401  re-exported
    BackendError,
    BundleFileNotFoundError,
    BundleFormatError,
    BundleIntegrityError,
    InputError,
    UnknownNameError,
)

__all__ = ["Runtime", "BackendError", "BundleFileNotFoundError", "BundleFormatError",
           "BundleIntegrityError", "InputError", "UnknownNameError", "tensorrt_available"]


def tensorrt_available() -> bool:
    """True when the TensorRT backend is compiled in and a CUDA device is visible."""
    return _runtime.tensorrt_available()


class Runtime:
    """A loaded bundle: all tasks resident, shared segments run once per call.

    Args:
        bundle: the ``NAME.mtb`` directory.
        backend: ``"auto"`` (TensorRT when compiled in and a GPU is present, else OpenVINO),
            ``"openvino"`` or ``"tensorrt"``.
        threads: OpenVINO ``INFERENCE_NUM_THREADS``; ``None`` lets OpenVINO choose.
        variant: the variant to load, or a list of variants to keep resident together
            (slimmable width configurations); ``None``: the manifest's ``default_variant``.
            The first one is the default for ``run``.
        precision: OpenVINO ``INFERENCE_PRECISION_HINT``: ``"f32"`` (parity, default) or
            ``"bf16"``. Set explicitly because the CPU plugin would pick bf16 on CPUs that have it.
        engine_target: load ``engines.<target>`` (built engines) instead of the ONNX segments.
        cache_dir: OpenVINO model cache directory (faster second load).
        verify: check every file's size and sha256 before use (default True).
    """

    def __init__(self, bundle: str | os.PathLike, backend: str = "auto", threads: int | None = None,
                 variant: str | Sequence[str] | None = None, precision: str = "f32", *,
                 engine_target: str | None = None, cache_dir: str | os.PathLike | None = None,
                 verify: bool = True) -> None:
        variants = [variant] if isinstance(variant, str) else list(variant or [])
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads={threads!r} must be a positive integer or None (OpenVINO chooses)")
        self.bundle = os.fspath(bundle)
        self._rt = _runtime.Runtime(self.bundle, backend=backend, variants=variants,
                                    threads=threads or 0, precision=precision,
                                    engine_target=engine_target or "",
                                    cache_dir=os.fspath(cache_dir) if cache_dir else "", verify=verify)

    @property
    def name(self) -> str:
        return self._rt.name

    @property
    def tasks(self) -> list[str]:
        """Task names in manifest order."""
        return self._rt.tasks

    @property
    def variants(self) -> list[str]:
        """Loaded variants; the first is the default for ``run``."""
        return self._rt.variants

    @property
    def backend(self) -> str:
        return self._rt.stats()["backend"]

    def input_spec(self, variant: str | None = None) -> dict:
        """``{"name", "shape", "dtype"}`` of the model input."""
        return self._rt.input_spec(variant or "")

    def output_spec(self, task: str, variant: str | None = None) -> dict:
        return self._rt.output_spec(task, variant or "")

    def plan(self, tasks: str | Sequence[str]) -> list[str]:
        """The segments a call with these tasks runs, each once, in execution order."""
        return self._rt.plan([tasks] if isinstance(tasks, str) else list(tasks))

    def run(self, image: np.ndarray, task: str | None = None, *, tasks: Sequence[str] | None = None,
            variant: str | None = None) -> dict[str, np.ndarray]:
        """Runs one frame. ``task="seg"`` or ``tasks=["seg", "depth"]``; neither: all tasks.

        Returns ``{task: array}``; arrays are new and belong to the caller."""
        if task is not None and tasks is not None:
            raise InputError("pass task= or tasks=, not both")
        names = [task] if task is not None else (self.tasks if tasks is None else list(tasks))
        if isinstance(tasks, str):
            raise InputError(f"tasks={tasks!r} must be a list of task names; use task={tasks!r} for one")
        return self._rt.run(image, names, variant or "")

    def stats(self) -> dict:
        """Load timing (``load_ms``, ``verify_ms``, ``compile_ms``), ``runs``, C++-side run time
        (``total_run_ms``, ``last_run_us``), ``intermediate_bytes`` allocated at load, and
        per-segment ``runs``/``total_ms``/``mean_us`` under ``segments["variant/segment"]``."""
        return self._rt.stats()

    def reset_stats(self) -> None:
        self._rt.reset_stats()

    def close(self) -> None:
        """Free every compiled segment and buffer now (idempotent); later calls raise InputError."""
        self._rt.close()

    @property
    def closed(self) -> bool:
        return self._rt.closed

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"Runtime({self.bundle!r}, closed)"
        return (f"Runtime({self.bundle!r}, backend={self.backend!r}, variants={self.variants}, "
                f"tasks={self.tasks})")
