"""The bundle: manifest.json + segments/*.onnx + golden I/O (+ engines). See docs/bundle-format.md."""

from toolchain.bundle.manifest import Bundle, validate_manifest

__all__ = ["Bundle", "validate_manifest"]
