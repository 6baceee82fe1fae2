"""A bundle's golden I/O on the device: read, check, compare (numpy + the stdlib only).

``read_manifest`` is the one place this package reads ``manifest.json`` in Python (the C++ core
parses it for the runtime); it reads the few keys golden parity needs: ``golden``, ``variants``,
``default_variant``, ``engines``. Swap it for the typed manifest model when that exists.

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
from mtedge_runtime.tolerance import Check, compare, tolerance_for


def read_manifest(bundle: str | os.PathLike) -> Dict[str, Any]:
    """``manifest.json`` of a bundle as a dict (errors name the file and the fix)."""
    path = os.path.join(os.fspath(bundle), "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist; expected a bundle directory NAME.mtb written by "
                          "`mtedge export` (copy the whole directory to the device)") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{path} is not readable JSON ({e}); copy the bundle again from the host") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("golden"), dict):
        raise BundleError(f"{path} has no 'golden' section; expected a bundle written by `mtedge export` "
                          "(golden I/O is part of every exported bundle): re-export it")
    return manifest


def engine_variant(manifest: Dict[str, Any], engine_target: str) -> Optional[str]:
    """The variant an ``engines.<target>`` entry was built from (None if there is no such entry:
    the runtime then reports the unknown target with the list of targets it has)."""
    entry = (manifest.get("engines") or {}).get(engine_target)
    return entry.get("variant") if isinstance(entry, dict) else None


def _read_npy(bundle: str, ref: Any, what: str) -> np.ndarray:
    """A golden ``.npy`` file, checked against the manifest's size and sha256."""
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        raise BundleError(f"manifest.json: {what} is {ref!r}; expected {{'file', 'sha256', 'bytes'}}: re-export the bundle")
    root = os.path.realpath(bundle)
    path = os.path.realpath(os.path.join(root, ref["file"]))
    if os.path.commonpath([root, path]) != root:
        raise BundleError(f"manifest.json: {what} file {ref['file']!r} lies outside the bundle; re-export the bundle")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise BundleError(f"{what} file {ref['file']} is missing from {bundle}; copy the whole bundle again") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != ref.get("bytes") or digest != ref.get("sha256"):
        raise BundleError(f"{what} file {ref['file']} has {len(data)} bytes, sha256 {digest[:12]}...; the manifest "
                          f"records {ref.get('bytes')} bytes, sha256 {str(ref.get('sha256'))[:12]}...: "
                          "the copy is damaged, copy the bundle again")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise BundleError(f"{what} file {ref['file']} is not a .npy array ({e}); re-export the bundle") from None


@dataclass
class Golden:
    """Golden I/O of one variant: ``inputs`` [samples, ...], ``outputs[task]`` [samples, ...]."""

    variant: str
    inputs: np.ndarray
    outputs: Dict[str, np.ndarray]
    entry: Dict[str, Any]  # the manifest's variant entry (precision, tolerance)


def read_golden(bundle: str | os.PathLike, variant: Optional[str] = None,
                manifest: Optional[Dict[str, Any]] = None) -> Golden:
    """Golden input and the golden outputs that belong to ``variant`` (default: the bundle's
    ``default_variant``, whose outputs are the top-level ``golden.outputs``)."""
    bundle = os.fspath(bundle)
    m = manifest if manifest is not None else read_manifest(bundle)
    variants = m.get("variants") or {}
    name = variant or m.get("default_variant")
    if name not in variants:
        raise BundleError(f"unknown variant {name!r}; this bundle has variants: {', '.join(variants) or 'none'}")
    entry = variants[name]
    own = (entry.get("golden") or {}).get("outputs")
    if own is None and name != m.get("default_variant"):
        raise BundleError(f"variant {name!r} has no golden outputs of its own (the bundle's golden outputs belong "
                          f"to {m.get('default_variant')!r}); verify {m.get('default_variant')!r}, or check {name!r} "
                          "on the host with `mtedge verify`")
    refs = own if own is not None else (m["golden"].get("outputs") or {})
    inputs = _read_npy(bundle, m["golden"].get("input"), "golden.input")
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
