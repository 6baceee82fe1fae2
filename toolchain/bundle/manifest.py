"""Reading and checking bundles from Python. The format is documented in docs/bundle-format.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import numpy as np

from toolchain.bundle.files import read_document, sha256_file, write_json_atomic
from toolchain.errors import BundleError

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
FORMAT_VERSION = 1


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate_manifest(doc: dict[str, Any], where: str = "manifest.json") -> None:
    """Raise BundleError naming the first schema violation and its JSON path."""
    if isinstance(doc, dict) and doc.get("format") == "mtedge-bundle" and doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{where}: format_version {doc.get('format_version')!r} is not supported; this mtedge reads version "
            f"{FORMAT_VERSION} (re-export the bundle with this mtedge)"
        )
    try:
        jsonschema.validate(doc, schema())
    except jsonschema.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BundleError(f"{where}: invalid at '{path}': {e.message}") from None
    _check_references(doc, where)


def _check_references(doc: dict[str, Any], where: str) -> None:
    segs = doc["segments"]
    for task, t in doc["tasks"].items():
        for s in t["segments"]:
            if s not in segs:
                raise BundleError(f"{where}: task {task!r} needs segment {s!r}, which is not in 'segments'")
    for vname, v in doc["variants"].items():
        missing = [s for s in segs if s not in v["segments"]]
        if missing:
            raise BundleError(f"{where}: variant {vname!r} has no file for segment(s) {', '.join(missing)}")
    if doc["default_variant"] not in doc["variants"]:
        raise BundleError(f"{where}: default_variant {doc['default_variant']!r} is not one of the variants")


def segments_for(manifest: dict[str, Any], tasks: Iterable[str] | None = None) -> list[str]:
    """Segments ``tasks`` need (all when None) in manifest order, which is topological."""
    if tasks is None:
        return list(manifest["segments"])
    unknown = [t for t in tasks if t not in manifest["tasks"]]
    if unknown:
        raise BundleError(f"unknown task(s) {', '.join(unknown)}; this bundle has tasks: {', '.join(manifest['tasks'])}")
    needed = {s for t in tasks for s in manifest["tasks"][t]["segments"]}
    return [s for s in manifest["segments"] if s in needed]


@dataclass
class Bundle:
    """A bundle directory with a validated manifest. Files are checked on access."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> "Bundle":
        root = Path(path)
        mpath = root / "manifest.json"
        if not root.is_dir():
            raise BundleError(f"bundle directory {root} not found")
        doc = read_document(mpath, BundleError, f"{root} is not a bundle: manifest.json is missing (an interrupted export?)",
                            lambda why: f"{mpath} is not valid JSON ({why}); the bundle is corrupt")
        validate_manifest(doc, str(mpath))
        return cls(root, doc)

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest["tasks"])

    @property
    def variants(self) -> list[str]:
        return list(self.manifest["variants"])

    def path(self, ref: dict[str, Any], check: bool = True) -> Path:
        """Absolute path of a {file, sha256, bytes} entry, verified unless check=False."""
        rel = ref["file"]
        p = self.root / rel
        if ".." in Path(rel).parts:
            raise BundleError(f"{self.root}: file path {rel!r} leaves the bundle")
        if not p.exists():
            raise BundleError(f"{self.root}: {rel} is missing")
        if check:
            size = p.stat().st_size
            if size != ref["bytes"]:
                raise BundleError(f"{self.root}: {rel} has {size} bytes, manifest says {ref['bytes']} (truncated or replaced)")
            if sha256_file(p) != ref["sha256"]:
                raise BundleError(f"{self.root}: {rel} does not match its sha256 in the manifest (tampered or corrupt)")
        return p

    def verify_files(self) -> list[str]:
        """Check every referenced file; return the relative paths checked."""
        checked = []
        for ref in self.file_refs():
            self.path(ref)
            checked.append(ref["file"])
        return checked

    def file_refs(self) -> list[dict[str, Any]]:
        m = self.manifest
        refs = [seg for v in m["variants"].values() for seg in v["segments"].values()]
        # a width configuration's own golden outputs
        refs += [ref for v in m["variants"].values() for ref in v.get("golden", {}).get("outputs", {}).values()]
        refs.append(m["golden"]["input"])
        refs += list(m["golden"]["outputs"].values())
        refs += list(m.get("task_models", {}).values())
        for eng in m.get("engines", {}).values():
            refs += list(eng["segments"].values())
        seen, out = set(), []
        for r in refs:
            if r["file"] not in seen:
                seen.add(r["file"])
                out.append(r)
        return out

    def variant(self, name: str | None = None) -> dict[str, Any]:
        name = name or self.manifest["default_variant"]
        if name not in self.manifest["variants"]:
            raise BundleError(f"unknown variant {name!r}; this bundle has variants: {', '.join(self.variants)}")
        return self.manifest["variants"][name]

    def segments_for(self, tasks: list[str] | None = None) -> list[str]:
        return segments_for(self.manifest, tasks)

    def golden(self, check: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = self.manifest["golden"]
        x = np.load(self.path(g["input"], check))
        return x, {t: np.load(self.path(ref, check)) for t, ref in g["outputs"].items()}

    def save_manifest(self) -> None:
        """Validate, then replace manifest.json atomically."""
        validate_manifest(self.manifest, str(self.root / "manifest.json"))
        write_json_atomic(self.root / "manifest.json", self.manifest)
