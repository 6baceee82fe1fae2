"""Reading, checking and writing bundles from Python. The format is documented in docs/bundle-format.md.

The manifest itself is the typed model of the device package (:mod:`mtedge_runtime.manifest`): one
definition of its keys, one validator carrying every rule the C++ runtime enforces, one writer.
This module adds what the host needs around it: a bundle directory, file checks, and the one save
path every writer (export, slim export, quantize, build) goes through. ``manifest.schema.json``
documents the format for other tools; tests hold it to the corpus and to every exported manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from mtedge_runtime import manifest as model
from mtedge_runtime.manifest import (OPENVINO_AGREEMENT, SIGNED_INT8_ON_OPENVINO, FileRef, Manifest, ManifestError,
                                     Variant, disagreement, openvino_advice, openvino_disagreement,
                                     signed_activations)

from toolchain.bundle.files import read_document, sha256_file, write_json_atomic
from toolchain.errors import BundleError

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
FORMAT_VERSION = model.FORMAT_VERSION
__all__ = ["Bundle", "FileRef", "Manifest", "ManifestError", "Variant", "validate_manifest", "write_manifest",
           "schema", "SCHEMA_PATH", "OPENVINO_AGREEMENT", "SIGNED_INT8_ON_OPENVINO", "disagreement", "openvino_advice",
           "openvino_disagreement", "signed_activations"]


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema (documentation for other tools; the typed model is what mtedge enforces)."""
    return json.loads(SCHEMA_PATH.read_text())


def validate_manifest(doc: Any, where: str = "manifest.json") -> Manifest:
    """The typed manifest of a JSON document; raises BundleError naming ``where`` and the bad field's path."""
    try:
        return model.parse(doc)
    except ManifestError as e:
        raise e.located(where) from None


def write_manifest(root: str | Path, manifest: Manifest) -> Manifest:
    """The one save path: check every rule on what is written, then replace manifest.json atomically.

    Returns the manifest as written (re-parsed), so a writer never keeps a model that differs from the file."""
    path = Path(root) / "manifest.json"
    doc = manifest.to_dict()
    checked = validate_manifest(doc, str(path))
    write_json_atomic(path, doc)
    return checked


@dataclass
class Bundle:
    """A bundle directory with a validated manifest. Files are checked on access."""

    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path) -> "Bundle":
        root = Path(path)
        mpath = root / "manifest.json"
        if not root.is_dir():
            raise BundleError(f"bundle directory {root} not found")
        doc = read_document(mpath, BundleError, f"{root} is not a bundle: manifest.json is missing (an interrupted export?)",
                            lambda why: f"{mpath} is not valid JSON ({why}); the bundle is corrupt")
        return cls(root, validate_manifest(doc, str(mpath)))

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest.tasks)

    @property
    def variants(self) -> list[str]:
        return list(self.manifest.variants)

    def path(self, ref: FileRef, check: bool = True) -> Path:
        """Absolute path of a file reference, its size and sha256 verified unless check=False."""
        rel, p = ref.file, self.root / ref.file
        if ".." in Path(rel).parts:
            raise BundleError(f"{self.root}: file path {rel!r} leaves the bundle")
        if not p.exists():
            raise BundleError(f"{self.root}: {rel} is missing")
        if check:
            if (size := p.stat().st_size) != ref.bytes:
                raise BundleError(f"{self.root}: {rel} has {size} bytes, manifest says {ref.bytes} (truncated or replaced)")
            if sha256_file(p) != ref.sha256:
                raise BundleError(f"{self.root}: {rel} does not match its sha256 in the manifest (tampered or corrupt)")
        return p

    def verify_files(self) -> list[str]:
        """Check every referenced file; return the relative paths checked."""
        refs = self.file_refs()
        for ref in refs:
            self.path(ref)
        return [ref.file for ref in refs]

    def file_refs(self) -> list[FileRef]:
        return self.manifest.file_refs()

    def variant(self, name: str | None = None) -> Variant:
        return self.manifest.variant(name)

    def segments_for(self, tasks: list[str] | None = None) -> list[str]:
        return self.manifest.segments_for(tasks)

    def golden(self, check: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = self.manifest.golden
        return np.load(self.path(g.input, check)), {t: np.load(self.path(ref, check)) for t, ref in g.outputs.items()}

    def save_manifest(self) -> None:
        """Check, then replace manifest.json atomically (:func:`write_manifest`)."""
        self.manifest = write_manifest(self.root, self.manifest)
