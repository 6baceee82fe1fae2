"""Python face of the C++ runtime (``mtedge_runtime._runtime``).

    from mtedge_runtime import Runtime
    rt = Runtime("fashion-mt.mtb")                 # verify, compile, allocate: once
    rt.run(x, task="garment")                      # {"garment": array}
    rt.run(x, tasks=["garment", "silhouette"])     # trunk runs once for both

Load once: every segment file's size and sha256 are checked, every segment of the loaded
variant(s) is compiled, every infer request and boundary tensor is created. After that,
``run`` neither compiles nor reads files nor allocates tensors inside the runtime; changing
the task set (or the loaded variant) costs nothing but the segments it needs.

Inputs: any tensor of exactly ``input_spec()["shape"]``: a numpy array, a torch CPU tensor or
anything with ``__dlpack__`` or ``__array_interface__``, and on TensorRT a device tensor with
``__cuda_array_interface__``. When it already is what the model reads (float32, C-contiguous,
aligned, in memory the backend reads: host for OpenVINO, device for TensorRT) its memory is read
in place (``stats()["last_input_address"]`` is its pointer, ``stats()["last_input_copy"]`` is
``""``). Otherwise it is converted/copied into the runtime's own input buffer and
``last_input_copy`` says why (``"float64 -> float32"``, ``"non-contiguous strides ..."``,
``"host -> device ..."``); ``run(..., copy=False)`` raises ``InputError`` with that reason
instead. Wrong shapes and non-float dtypes always raise ``InputError`` (``ValueError``).

Outputs: fresh numpy arrays per call, owned by the caller (safe to keep and modify).

Threads: one ``Runtime`` serves concurrent callers. ``Runtime(..., callers=N)`` builds N
execution contexts at load (per segment an infer request / execution context and its own
boundary tensors; on TensorRT its own CUDA stream and activation memory) over one set of compiled
segments: the weights are resident once. A call takes a free context, waiting while all N are
busy, and releases the GIL while it runs, so N threads compute N frames at once. OpenVINO
compiles N CPU streams for it (``threads`` is then the total they share).
``close()`` (or leaving a ``with Runtime(...) as rt:`` block) frees every compiled segment at
once; calls in progress finish first, and any later or waiting call, from any thread, raises
``InputError`` saying the runtime is closed.

Errors (all subclasses of ``mtedge_runtime.errors.MtedgeError``, from ``mtedge_runtime._runtime``):
``BundleFileNotFoundError`` (FileNotFoundError), ``BundleIntegrityError`` and
``BundleFormatError`` (ValueError), ``InputError`` (ValueError), ``UnknownNameError``
(KeyError: unknown task/variant), ``BackendError`` (RuntimeError).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import numpy as np

from mtedge_runtime import _runtime, manifest
from mtedge_runtime.golden import read_manifest
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
        callers: execution contexts, i.e. how many calls from different threads compute at once
            on the one set of compiled segments (default 1: calls take turns).
    """

    def __init__(self, bundle: str | os.PathLike, backend: str = "auto", threads: int | None = None,
                 variant: str | Sequence[str] | None = None, precision: str = "f32", *,
                 engine_target: str | None = None, cache_dir: str | os.PathLike | None = None,
                 verify: bool = True, callers: int = 1) -> None:
        variants = [variant] if isinstance(variant, str) else list(variant or [])
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads={threads!r} must be a positive integer or None (OpenVINO chooses)")
        if not isinstance(callers, int) or isinstance(callers, bool) or callers < 1:
            raise InputError(f"callers={callers!r} must be a positive integer (concurrent calls)")
        self.bundle = os.fspath(bundle)
        self._rt = _runtime.Runtime(self.bundle, backend=backend, variants=variants,
                                    threads=threads or 0, precision=precision,
                                    engine_target=engine_target or "",
                                    cache_dir=os.fspath(cache_dir) if cache_dir else "", verify=verify,
                                    callers=callers)
        if self.backend == "openvino":
            _warn_recorded_disagreement(self.bundle, self.variants)

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

    def run(self, image: Any, task: str | None = None, *, tasks: Sequence[str] | None = None,
            variant: str | None = None, copy: bool = True) -> dict[str, np.ndarray]:
        """Runs one frame. ``task="seg"`` or ``tasks=["seg", "depth"]``; neither: all tasks.

        ``image``: numpy array, torch tensor or any DLPack / ``__array_interface__`` /
        ``__cuda_array_interface__`` tensor (see the module docstring). ``copy=False``: raise
        ``InputError`` naming why instead of copying an input that cannot be read in place.
        Thread-safe; concurrent calls overlap up to ``callers``.
        Returns ``{task: array}``; arrays are new and belong to the caller."""
        if task is not None and tasks is not None:
            raise InputError("pass task= or tasks=, not both")
        names = [task] if task is not None else (self.tasks if tasks is None else list(tasks))
        if isinstance(tasks, str):
            raise InputError(f"tasks={tasks!r} must be a list of task names; use task={tasks!r} for one")
        return self._rt.run(image, names, variant or "", copy)

    def stats(self) -> dict:
        """Load timing (``load_ms``, ``verify_ms``, ``compile_ms``), ``compiled_segments``
        (segments x variants: independent of ``callers``), ``contexts``, ``parallel_lanes`` (how
        many can compute at once: OpenVINO streams as compiled), ``runs``, C++-side run time
        (``total_run_ms``, ``last_run_us``), the last input's ``last_input_address`` and
        ``last_input_copy`` ("" when read in place), ``intermediate_bytes`` allocated at load (all
        contexts), per-segment ``runs``/``total_ms``/``mean_us`` under
        ``segments["variant/segment"]`` and ``per_context`` ``runs``/``total_run_ms``."""
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


def _warn_recorded_disagreement(bundle: str, variants: list[str]) -> None:
    """`mtedge quantize` records where its host's OpenVINO computed a variant off the golden outputs
    (docs/quantization.md: a CPU plugin defect with signed int8 activations); loading such a
    variant on OpenVINO says so, since this OpenVINO may or may not share the defect."""
    m = read_manifest(bundle)
    for v in variants:
        off = manifest.openvino_disagreement(m.variants[v])
        if off:
            advice = manifest.openvino_advice(m.variants[v])
            hint = f" {advice}." if advice else ""
            warnings.warn(f"variant {v!r} of {bundle}: OpenVINO computed it off its golden outputs: {off}; check it "
                          f"here with `mtedge-run {bundle} --variant {v} --verify`.{hint}", RuntimeWarning, stacklevel=3)
