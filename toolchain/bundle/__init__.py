"""The bundle: manifest.json + segments/*.onnx + golden I/O (+ engines). See docs/bundle-format.md."""

from toolchain.bundle.manifest import Bundle, Manifest, validate_manifest, write_manifest

__all__ = ["Bundle", "Manifest", "validate_manifest", "write_manifest"]
