"""Writing a variant's segment files into a bundle and describing them in the manifest.

Files are content-addressed (`segments/<segment>.<variant>.<sha12>.onnx`) and written before the
manifest, which is replaced atomically last: an interrupted run leaves the old manifest pointing
at the old files, all still present. Files of a replaced variant that nothing references any
more are removed only after the new manifest is in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import numpy as np
import onnx
from mtedge_runtime.manifest import TensorSpec, Variant, VariantSegment

from toolchain.bundle.files import file_ref, write_bytes_atomic
from toolchain.bundle.manifest import Bundle
from toolchain.bundle.executor import SegmentModel
from mtedge_runtime.tolerance import recorded_tolerance

_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


def _specs(values: Any) -> list[TensorSpec]:
    out = []
    for v in values:
        tt = v.type.tensor_type
        dtype = _DTYPES.get(tt.elem_type)
        if dtype is None:
            raise ValueError(f"boundary tensor {v.name!r} has ONNX type {tt.elem_type}; bundles carry float32/float16 only")
        out.append(TensorSpec(v.name, [max(int(d.dim_value), 1) for d in tt.shape.dim], dtype))
    return out


def write_segment_files(bundle: Bundle, variant: str, models: dict[str, SegmentModel],
                        precision: dict[str, str], float_layers: dict[str, list[str]] | None = None
                        ) -> dict[str, VariantSegment]:
    """Write each segment model (or reuse the fp32 file when it *is* the fp32 model); return the
    variant's `segments` entries. Nothing in the manifest changes here."""
    fp32 = bundle.variant("fp32").segments
    entries: dict[str, VariantSegment] = {}
    for seg, sm in models.items():
        if sm.key == "fp32":
            entries[seg] = dataclasses.replace(fp32[seg], precision="fp32", float_layers=None)
            continue
        data = sm.model.SerializeToString()
        digest = hashlib.sha256(data).hexdigest()[:12]
        path = bundle.root / "segments" / f"{seg}.{variant}.{digest}.onnx"
        if not path.exists():
            write_bytes_atomic(path, data)
        g = sm.model.graph
        layers = list(float_layers[seg]) if float_layers and float_layers.get(seg) else None
        entries[seg] = VariantSegment(**file_ref(bundle.root, path), inputs=_specs(g.input), outputs=_specs(g.output),
                                      precision=precision[seg], float_layers=layers)
    return entries


def tolerances(precision: str, golden_errors: dict[str, float], val_errors: dict[str, float],
               golden_outputs: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """`variant.tolerance` per task for `mtedge verify` and build verification: the one rule of
    mtedge_runtime/tolerance.py (floor scaled by the task's golden outputs, twice the golden error this
    variant shows in onnxruntime, the worst error seen on the val split)."""
    golden_outputs = golden_outputs or {}
    return {t: recorded_tolerance(precision, golden_outputs.get(t), e, val_errors.get(t, 0.0))
            for t, e in golden_errors.items()}


def publish_variant(bundle: Bundle, variant: Variant) -> list[str]:
    """Put `variant` into the manifest and save it atomically; drop engine entries built from
    the replaced variant (they are stale); then delete files no variant references any more.
    Returns notes for the report."""
    notes = []
    m, name = bundle.manifest, variant.name
    old = m.variants.get(name)
    m.variants[name] = variant
    stale = [k for k, e in m.engines.items() if e.variant == name and old is not None]
    for k in stale:
        del m.engines[k]
        notes.append(f"engine entry {k!r} was built from the previous {name!r} variant and was removed; rebuild it")
    bundle.save_manifest()
    if old is not None:
        live = {ref.file for ref in bundle.file_refs()}
        for seg_name, seg in old.segments.items():
            ours = re.fullmatch(rf"segments/{re.escape(seg_name)}\.{re.escape(name)}\.[0-9a-f]{{12}}\.onnx", seg.file)
            if ours and seg.file not in live:
                (bundle.root / seg.file).unlink(missing_ok=True)
    return notes
