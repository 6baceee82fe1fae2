"""mtedge: multitask networks on Jetson-class edge devices.

The import package is ``toolchain``; the command is ``mtedge``.
"""

__version__ = "0.1.0"
