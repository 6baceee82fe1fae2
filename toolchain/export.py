"""Export a multitask model as a bundle of task segments (docs/bundle-format.md).

    trace -> partition into segments -> one ONNX per segment -> onnx.checker -> onnxruntime
    parity against torch on real samples -> golden I/O -> manifest (every rule checked) ->
    atomic publication of NAME.mtb/
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import torch
from torch import nn

from toolchain.version import __version__
from mtedge_runtime import tolerance as tolerance_rule

from toolchain.bundle.files import file_ref, staged_directory, write_bytes_atomic
from toolchain.bundle.manifest import Bundle, validate_manifest
from toolchain.bundle.executor import ReferenceExecutor
from toolchain.data.loaders import batches
from toolchain.errors import SpecError, VerificationError
from toolchain.graph.partition import INPUT_NAME, Partition, partition, segment_module
from toolchain.graph.capture import multitask
from toolchain.graph.tracing import trace
from toolchain.model import LoadedModel, state_sha256
from toolchain.progress import progress_bar
from toolchain.recipe import Recipe
from toolchain.torch_onnx import TaskSubset, onnx_bytes

FP32_TOLERANCE = 1e-4


@dataclass
class ExportResult:
    path: Path
    max_abs_error: dict[str, float]  # onnxruntime chain vs torch, per task, on the golden samples
    partition: Partition


def _tensor_spec(name: str, shape: Sequence[int]) -> dict[str, Any]:
    return {"name": name, "shape": [int(s) for s in shape], "dtype": "float32"}


def _golden_samples(recipe: Recipe, n: int) -> tuple[np.ndarray, str]:
    x, _ = next(batches(recipe, "test", count=n, batch_size=n))
    source = {
        "fashion-mnist": f"fashion-mnist test split, images 0..{n - 1} (noisy input)",
        "photos": f"scikit-image photos, {n} deterministic crops",
        "random": f"{n} standard-normal images (seeded)",
        "images": f"the first {n} test images of {recipe.data.options.get('path')}",
        "arrays": f"the first {n} test samples of {recipe.data.options.get('path')}",
        "python": f"the first {n} test samples from {recipe.data.options.get('source')}",
    }[recipe.data.kind]
    return x.numpy().astype(np.float32), source


def export_bundle(model: LoadedModel | nn.Module, recipe: Recipe, out: str | Path, tasks: Sequence[str] | None = None,
                  dynamic_batch: bool = False, task_models: bool = False, golden_samples: int = 4,
                  name: str | None = None, force: bool = False, tolerance: float = FP32_TOLERANCE) -> ExportResult:
    """Write bundle `out` (e.g. `fashion-mt.mtb`) for `model` under `recipe`. Raises VerificationError
    if chaining the segments in onnxruntime differs from torch by more than `tolerance` on any task;
    nothing is published then."""
    loaded = model if isinstance(model, LoadedModel) else None
    module = multitask(loaded.module if loaded else model, recipe).eval()
    spec = loaded.spec if loaded else type(module).__name__
    all_tasks = list(recipe.tasks)
    tasks = list(tasks) if tasks else all_tasks
    unknown = [t for t in tasks if t not in recipe.tasks]
    if unknown:
        raise SpecError(f"unknown task(s) {', '.join(unknown)}; recipe {recipe.name!r} has tasks: {', '.join(all_tasks)}")
    out = Path(out)
    bundle_name = name or out.name.removesuffix(".mtb")

    shape = tuple(recipe.input.shape)
    golden_x, golden_source = _golden_samples(recipe, golden_samples)
    example = torch.from_numpy(golden_x[: shape[0]].copy())
    if tuple(example.shape) != shape:
        raise SpecError(f"recipe input.shape {list(shape)} does not match the data's sample shape {list(example.shape)}")

    # every task is an output: multitask() refused the model otherwise
    part = partition(trace(TaskSubset(module, tasks), example), strip_prefix="model.")

    with staged_directory(out, overwrite=force) as tmp, progress_bar(transient=True) as progress:
        job = progress.add_task(f"exporting {bundle_name}", total=len(part.segments) + (len(tasks) if task_models else 0) + 2)
        seg_entries: dict[str, Any] = {}
        variant_segments: dict[str, Any] = {}
        for seg_name, seg in part.segments.items():
            gm = segment_module(part, seg_name)
            args = tuple(torch.zeros(part.tensor_shapes[t]) for t in seg.inputs)
            data = onnx_bytes(gm, args, seg.inputs, seg.outputs, dynamic_batch)
            # An input read only for its (static) shape is folded away by the exporter; the
            # segment then simply does not read that tensor.
            kept = {i.name for i in onnx.load_from_string(data).graph.input}
            inputs = [t for t in seg.inputs if t in kept]
            path = tmp / "segments" / f"{seg_name}.onnx"
            write_bytes_atomic(path, data)
            seg_entries[seg_name] = {"inputs": inputs, "outputs": seg.outputs, "tasks": [t for t in tasks if t in seg.tasks],
                                     "shared": seg.shared, "flops": int(seg.flops), "params": int(seg.params)}
            variant_segments[seg_name] = {**file_ref(tmp, path),
                                          "inputs": [_tensor_spec(t, part.tensor_shapes[t]) for t in inputs],
                                          "outputs": [_tensor_spec(t, part.tensor_shapes[t]) for t in seg.outputs]}
            progress.advance(job)

        task_model_refs = {}
        if task_models:
            for t in tasks:
                data = onnx_bytes(TaskSubset(module, [t]), (example,), [INPUT_NAME], [t], dynamic_batch)
                path = tmp / "tasks" / f"{t}.onnx"
                write_bytes_atomic(path, data)
                task_model_refs[t] = file_ref(tmp, path)
                progress.advance(job)

        # golden I/O: torch fp32 outputs on real samples
        with torch.no_grad():
            golden_out = [module(torch.from_numpy(golden_x[i : i + shape[0]].copy()))
                          for i in range(0, len(golden_x), shape[0])]
        (tmp / "golden").mkdir()
        np.save(tmp / "golden" / "input.npy", golden_x)
        golden_refs = {}
        for t in tasks:
            np.save(tmp / "golden" / f"{t}.npy", np.concatenate([o[t].numpy() for o in golden_out]).astype(np.float32))
            golden_refs[t] = file_ref(tmp, tmp / "golden" / f"{t}.npy")
        progress.advance(job)

        task_entries = {t: {"kind": ts.kind, "metric": ts.metric, "higher_is_better": ts.higher_is_better,
                            "allowed_drop": ts.allowed_drop, "output": part.task_outputs[t],
                            "segments": part.task_segments[t]} for t in tasks for ts in [recipe.tasks[t]]}
        norm = recipe.input
        manifest: dict[str, Any] = {
            "format": "mtedge-bundle", "format_version": 1, "name": bundle_name,
            "input": {"name": INPUT_NAME, "shape": list(shape), "dtype": "float32", "layout": "NCHW",
                      "dynamic_batch": dynamic_batch, "color": recipe.data.options.get("color", "gray" if shape[1] == 1 else "rgb"),
                      "normalization": {"scale": norm.scale, "mean": list(norm.mean), "std": list(norm.std)}},
            "tasks": task_entries, "segments": seg_entries, "default_variant": "fp32",
            "variants": {"fp32": {"precision": "fp32", "config": None,
                                  "tolerance": {t: tolerance for t in tasks}, "segments": variant_segments}},
            "engines": {},
            "golden": {"input": file_ref(tmp, tmp / "golden" / "input.npy"), "outputs": golden_refs,
                       "samples": len(golden_x), "source": golden_source},
            "provenance": {"model": spec, "model_sha256": loaded.sha256 if loaded else state_sha256(module),
                           "recipe": recipe.to_dict(),
                           "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "tools": _tool_versions()},
        }
        if task_model_refs:
            manifest["task_models"] = task_model_refs
        bundle = Bundle(tmp, validate_manifest(manifest))
        bundle.save_manifest()  # last file written; the rename publishes it
        # numerics before publication: the onnxruntime chain must reproduce torch, by the one rule
        got, expected = ReferenceExecutor(bundle, check_files=False).run_golden()  # just written
        checks = {t: tolerance_rule.compare(t, got[t], expected[t], tolerance) for t in tasks}
        bad = [t for t, c in checks.items() if not c.passed]
        if bad:
            raise VerificationError(f"onnxruntime output differs from torch beyond {tolerance:g}: "
                                    + ", ".join(f"{t}: max abs error {checks[t].max_abs_err:.3g}" for t in bad))
        progress.advance(job)
    return ExportResult(out, {t: c.max_abs_err for t, c in checks.items()}, part)


def _tool_versions() -> dict[str, str]:
    import onnxruntime
    import openvino

    return {"mtedge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__.split("-")[0]}
