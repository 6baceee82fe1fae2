"""Errors users see. Each message names the bad thing, what was expected, and a fix."""


class MtedgeError(Exception):
    """Base class: the CLI prints these without a traceback."""


class SpecError(MtedgeError, ValueError):
    """A model spec, recipe or option is malformed."""


class BundleError(MtedgeError):
    """A bundle is missing, corrupt, tampered with or of an unknown format."""


class VerificationError(MtedgeError):
    """Outputs differ from the reference by more than the tolerance."""


class OutputError(MtedgeError, OSError):
    """An artifact cannot be written: the output directory is read-only, full, or not a directory."""
