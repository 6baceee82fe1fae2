"""The few bundle operations the builder needs: read + check, hash, write atomically.

The exporter owns the bundle format (docs/bundle-format.md); this module only reads manifests,
verifies the files it uses, and rewrites ``manifest.json`` with a new ``engines`` entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from toolchain.errors import BundleError

MANIFEST_SCHEMA = Path(__file__).resolve().parents[1] / "bundle" / "manifest.schema.json"


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    return json.loads(MANIFEST_SCHEMA.read_text())


def validate_manifest(manifest: dict[str, Any], where: str | Path) -> None:
    """Raise BundleError naming the first bad field of ``manifest``."""
    validator = jsonschema.Draft202012Validator(manifest_schema())
    err = next(iter(sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))), None)
    if err is not None:
        field = ".".join(str(p) for p in err.absolute_path) or "<top>"
        raise BundleError(f"{where}: manifest field '{field}': {err.message}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_ref(bundle: Path, rel: str) -> dict[str, Any]:
    """``{file, sha256, bytes}`` of a file inside the bundle (``rel`` uses ``/``)."""
    p = bundle / rel
    return {"file": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}


def check_file(bundle: Path, ref: dict[str, Any]) -> Path:
    """Verify that a referenced file exists with the recorded size and sha256; return its path."""
    rel = ref["file"]
    if rel.startswith("/") or ".." in rel.split("/"):
        raise BundleError(f"{bundle}: path {rel!r} leaves the bundle; paths are relative and never contain '..'")
    p = bundle / rel
    if not p.is_file():
        raise BundleError(f"{bundle}: {rel} is missing; re-export or re-copy the bundle")
    if p.stat().st_size != ref["bytes"] or sha256_file(p) != ref["sha256"]:
        raise BundleError(f"{bundle}: {rel} does not match its recorded size/sha256 (corrupt or tampered); "
                          "re-export or re-copy the bundle")
    return p


def load_manifest(bundle: str | Path) -> tuple[Path, dict[str, Any]]:
    """(bundle dir, manifest) after schema validation; names the bundle when it is not one."""
    root = Path(bundle)
    mf = root / "manifest.json"
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle directory (NAME.mtb/ with manifest.json)")
    if not mf.is_file():
        raise BundleError(f"{root} has no manifest.json; a directory without one is not a bundle (interrupted export?)")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"{mf}: not valid JSON ({e})") from e
    validate_manifest(manifest, mf)
    return root, manifest


def write_bytes_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(bundle: Path, manifest: dict[str, Any]) -> None:
    """Validate, then replace ``manifest.json`` atomically (temp + os.replace)."""
    validate_manifest(manifest, bundle / "manifest.json")
    write_bytes_atomic(bundle / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())


def topo_segments(manifest: dict[str, Any], tasks: list[str] | None = None) -> list[str]:
    """Segments needed for ``tasks`` (all when None) in manifest order, which is topological."""
    wanted = set(manifest["segments"]) if tasks is None else {s for t in tasks for s in manifest["tasks"][t]["segments"]}
    return [s for s in manifest["segments"] if s in wanted]
