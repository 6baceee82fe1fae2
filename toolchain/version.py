"""The package version (recorded in bundles, checkpoints and sweep caches)."""

__version__ = "0.1.0"
