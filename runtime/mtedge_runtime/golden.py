"""A bundle's golden I/O on the device: read, check, compare (numpy + the stdlib only).

``read_manifest`` reads ``manifest.json`` into the typed, validated model
(:mod:`mtedge_runtime.manifest`, the same rules the C++ parser enforces).

``check_golden(runtime, bundle, tasks)`` runs every golden sample through a loaded
:class:`mtedge_runtime.Runtime` and compares each task's output with its golden file using the
one rule every mtedge verifier uses (:mod:`mtedge_runtime.tolerance`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mtedge_runtime.errors import BundleError
from mtedge_runtime.manifest import FileRef, Manifest, Variant, parse
from mtedge_runtime.tolerance import Check, compare, tolerance_for


def read_manifest(bundle: str | os.PathLike) -> Manifest:
    """The bundle's validated manifest (errors name the file, the field and the fix)."""
    path = os.path.join(os.fspath(bundle), "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist; expected a bundle directory NAME.mtb written by "
                          "`mtedge export` (copy the whole directory to the device)") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{path} is not readable JSON ({e}); copy the bundle again from the host") from None
    return parse(doc)


def engine_variant(manifest: Manifest, engine_target: str) -> Optional[str]:
    """The variant an ``engines.<target>`` entry was built from (None if there is no such entry:
    the runtime then reports the unknown target with the list of targets it has)."""
    entry = manifest.engines.get(engine_target)
    return entry.variant if entry is not None else None


def _read_npy(bundle: str, ref: FileRef, what: str) -> np.ndarray:
    """A golden ``.npy`` file, checked against the manifest's size and sha256."""
    root = os.path.realpath(bundle)
    path = os.path.realpath(os.path.join(root, ref.file))
    if os.path.commonpath([root, path]) != root:
        raise BundleError(f"manifest.json: {what} file {ref.file!r} lies outside the bundle; re-export the bundle")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise BundleError(f"{what} file {ref.file} is missing from {bundle}; copy the whole bundle again") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != ref.bytes or digest != ref.sha256:
        raise BundleError(f"{what} file {ref.file} has {len(data)} bytes, sha256 {digest[:12]}...; the manifest "
                          f"records {ref.bytes} bytes, sha256 {ref.sha256[:12]}...: "
                          "the copy is damaged, copy the bundle again")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise BundleError(f"{what} file {ref.file} is not a .npy array ({e}); re-export the bundle") from None


@dataclass
class Golden:
    """Golden I/O of one variant: ``inputs`` [samples, ...], ``outputs[task]`` [samples, ...]."""

    variant: str
    inputs: np.ndarray
    outputs: Dict[str, np.ndarray]
    entry: Variant  # the manifest's variant (precision, tolerance)


def read_golden(bundle: str | os.PathLike, variant: Optional[str] = None,
                manifest: Optional[Manifest] = None) -> Golden:
    """Golden input and the golden outputs that belong to ``variant`` (default: the bundle's
    ``default_variant``, whose outputs are the top-level ``golden.outputs``)."""
    bundle = os.fspath(bundle)
    m = manifest if manifest is not None else read_manifest(bundle)
    entry = m.variant(variant)  # raises naming the variants the bundle has
    name = entry.name
    own = entry.golden.outputs if entry.golden is not None else None
    if own is None and name != m.default_variant:
        raise BundleError(f"variant {name!r} has no golden outputs of its own (the bundle's golden outputs belong "
                          f"to {m.default_variant!r}); verify {m.default_variant!r}, or check {name!r} "
                          "on the host with `mtedge verify`")
    refs = own if own is not None else m.golden.outputs
    inputs = _read_npy(bundle, m.golden.input, "golden.input")
    outputs = {task: _read_npy(bundle, ref, f"golden output of task {task!r}") for task, ref in refs.items()}
    return Golden(name, inputs, outputs, entry)


def check_golden(runtime: Any, bundle: str | os.PathLike, tasks: Optional[Sequence[str]] = None,
                 variant: Optional[str] = None) -> List[Check]:
    """Runs every golden sample through ``runtime`` and compares each task with its golden output.

    ``variant`` must be one the runtime has loaded (default: its first). A task without a golden
    output is an error: nothing could be checked."""
    golden = read_golden(bundle, variant or runtime.variants[0])
    names = list(tasks) if tasks else list(runtime.tasks)
    batch = int(runtime.input_spec(golden.variant)["shape"][0])
    samples = golden.inputs.shape[0]
    if samples % batch:
        raise BundleError(f"golden input has {samples} samples, not a multiple of the model's batch {batch}; re-export the bundle")
    missing = [t for t in names if t not in golden.outputs]
    if missing:
        raise BundleError(f"task(s) {', '.join(missing)} have no golden output in variant {golden.variant!r} "
                          f"(it has: {', '.join(golden.outputs) or 'none'}); re-export the bundle")
    got: Dict[str, List[np.ndarray]] = {t: [] for t in names}
    for i in range(0, samples, batch):
        x = np.ascontiguousarray(golden.inputs[i:i + batch], dtype=np.float32)
        out = runtime.run(x, tasks=names, variant=golden.variant)
        for t in names:
            got[t].append(out[t])
    checks = []
    for t in names:
        reference = golden.outputs[t]
        result = np.concatenate(got[t], axis=0)
        checks.append(compare(t, result, reference, tolerance_for(golden.entry, t, reference, golden.variant)))
    return checks
