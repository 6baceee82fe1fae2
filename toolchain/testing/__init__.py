"""Helpers for tests and benchmarks that need bundles without running the exporter."""

from toolchain.testing.toy_bundle import make_toy_bundle, reference_outputs

__all__ = ["make_toy_bundle", "reference_outputs"]
