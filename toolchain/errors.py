"""Errors users see. Each message names the bad thing, what was expected, and a fix.

``MtedgeError`` and ``BundleError`` come from the device runtime's package (the C++ binding's
exception classes derive from them too), so one ``except MtedgeError`` catches both halves."""

from mtedge_runtime.errors import BundleError, MtedgeError

__all__ = ["BundleError", "MtedgeError", "OutputError", "SpecError", "VerificationError"]


class SpecError(MtedgeError, ValueError):
    """A model spec, recipe or option is malformed."""


class VerificationError(MtedgeError):
    """Outputs differ from the reference by more than the tolerance."""


class OutputError(MtedgeError, OSError):
    """An artifact cannot be written: the output directory is read-only, full, or not a directory."""
