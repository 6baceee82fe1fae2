"""The bundle operations the builder needs, as thin adapters over `toolchain.bundle`.

The exporter owns the bundle format (docs/bundle-format.md); the builder only reads manifests,
verifies the files it uses, and rewrites ``manifest.json`` with a new ``engines`` entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.bundle import files
from toolchain.bundle.files import sha256_file, write_bytes_atomic  # noqa: F401  re-exported
from toolchain.bundle.manifest import Bundle, validate_manifest


def file_ref(bundle: Path, rel: str) -> dict[str, Any]:
    """``{file, sha256, bytes}`` of a file inside the bundle (``rel`` uses ``/``)."""
    return files.file_ref(Path(bundle), Path(bundle) / rel)


def check_file(bundle: Path, ref: dict[str, Any]) -> Path:
    """Verify that a referenced file exists with the recorded size and sha256; return its path."""
    return Bundle(Path(bundle), {}).path(ref)


def load_manifest(bundle: str | Path) -> tuple[Path, dict[str, Any]]:
    """(bundle dir, manifest) after schema validation; names the bundle when it is not one."""
    b = Bundle.open(bundle)
    return b.root, b.manifest


def write_manifest(bundle: Path, manifest: dict[str, Any]) -> None:
    """Validate, then replace ``manifest.json`` atomically (temp + os.replace)."""
    validate_manifest(manifest, str(Path(bundle) / "manifest.json"))
    files.write_json_atomic(Path(bundle) / "manifest.json", manifest)
