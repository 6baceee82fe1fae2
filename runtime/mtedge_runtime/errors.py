"""Base classes of every error mtedge raises, host toolchain and device runtime alike.

They live in the device package because the C++ binding derives its exception classes from them
and the host toolchain (``toolchain.errors``) extends them; the device never imports the host.
"""


class MtedgeError(Exception):
    """Base class: the CLIs print these without a traceback."""


class BundleError(MtedgeError):
    """A bundle is missing, corrupt, tampered with or of an unknown format."""
