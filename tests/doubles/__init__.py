"""Test doubles for what cannot run on this machine (TensorRT, trtexec) and a toy bundle.

Everything here is for tests only and named as such: nothing under toolchain/ imports it.
"""
