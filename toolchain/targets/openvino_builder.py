"""CPU engines through OpenVINO: compile each segment, export the compiled blob, re-import to verify.

A blob is ``CompiledModel.export_model()``; load it with
``ov.Core().import_model(stream, "CPU", config)`` using the same OpenVINO version and the
``built_with.config`` recorded in the manifest.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

from toolchain.bundle.executor import Runner, request_runner
from toolchain.bundle.files import write_bytes_atomic
from toolchain.bundle.manifest import Bundle, Manifest
from toolchain.targets.plan import EngineBuildStep


def _core() -> Any:
    import openvino as ov

    return ov.Core()


def openvino_version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def build_blob(core: Any, step: EngineBuildStep, bundle: Path, out: Path) -> None:
    """Compile ``step.onnx`` for the CPU with the step's config and write the exported blob to ``out``."""
    blob = core.compile_model(core.read_model(str(bundle / step.onnx)), "CPU", dict(step.ov_config)).export_model()
    write_bytes_atomic(out, blob.getvalue() if isinstance(blob, io.BytesIO) else bytes(blob))


def build_steps(steps: list[EngineBuildStep], bundle: Path, manifest: Manifest, staging: Path,
                on_step: Callable[[EngineBuildStep], None] = lambda s: None) -> dict[str, Path]:
    """Build every step into ``staging`` after checking each ONNX file's sha256."""
    core = _core()
    built = {}
    for step in steps:
        Bundle(bundle, manifest).path(manifest.variant(step.variant).segments[step.segment])
        out = staging / step.engine_path
        build_blob(core, step, bundle, out)
        built[step.engine_path] = out
        on_step(step)
    return built


def blob_runner(core: Any, blob: Path, config: dict[str, Any]) -> Runner:
    """A runner over an exported blob, imported as a reader of the bundle would."""
    return request_runner(core.import_model(io.BytesIO(blob.read_bytes()), "CPU", config))


def runners_for(steps: list[EngineBuildStep], files: dict[str, Path]) -> dict[str, Runner]:
    """{segment: runner} over the built blobs of one variant."""
    core = _core()
    return {s.segment: blob_runner(core, files[s.engine_path], dict(s.ov_config)) for s in steps}
