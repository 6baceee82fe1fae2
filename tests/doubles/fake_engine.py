"""TEST DOUBLE: the one writer of the "serialized engine" the fake TensorRT accepts.

The fake ``tensorrt`` module (fake_tensorrt.py) and the trtexec double write engines with
``engine_bytes``; the fake libnvinfer (tests/tensorrt_double/engine_file.h, the one reader)
deserializes them and runs the ONNX inside with OpenVINO. Layout (little-endian, no padding)::

    char[16] b"mtedge-fake-trt\\0"
    u32 format (1), u32 major, u32 minor, u32 patch      TensorRT version that "built" it
    i64 activation_bytes                                getDeviceMemorySizeV2()
    u32 name_len, name                                   engine name (the segment)
    u64 onnx_len, u64 fnv1a64(onnx), onnx bytes          what runs on enqueueV3
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"mtedge-fake-trt\0"
FORMAT = 1
_HEAD = struct.Struct("<16sIIIIq")


def fnv1a64(data: bytes) -> int:
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def activation_bytes(onnx_bytes: bytes) -> int:
    """A deterministic stand-in for the activation memory a real builder would choose: half the
    ONNX size rounded up to 256 bytes (segments differ, so the backend's shared scratch must be
    sized by the hungriest engine). Standard library only: the trtexec double runs on any python3."""
    return max(256, -(-len(onnx_bytes) // 2 // 256) * 256)


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in version.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def engine_bytes(onnx_bytes: bytes, tensorrt_version: str, name: str) -> bytes:
    major, minor, patch = version_tuple(tensorrt_version)
    name_b = name.encode()
    return (_HEAD.pack(MAGIC, FORMAT, major, minor, patch, activation_bytes(onnx_bytes))
            + struct.pack("<I", len(name_b)) + name_b
            + struct.pack("<QQ", len(onnx_bytes), fnv1a64(onnx_bytes)) + onnx_bytes)


@dataclass
class EngineFile:
    version: tuple[int, int, int]
    activation_bytes: int
    name: str
    onnx: bytes


def parse_engine(data: bytes) -> EngineFile:
    """The reader's checks in Python, for tests of the Python face (engine_file.h is the reader
    the runtime uses)."""
    if len(data) < _HEAD.size or data[:16] != MAGIC:
        raise ValueError("not a fake TensorRT engine (magic tag does not match)")
    _, fmt, major, minor, patch, act = _HEAD.unpack_from(data)
    if fmt != FORMAT:
        raise ValueError(f"fake engine format {fmt}, expected {FORMAT}")
    off = _HEAD.size
    (name_len,) = struct.unpack_from("<I", data, off)
    name = data[off + 4:off + 4 + name_len].decode()
    off += 4 + name_len
    onnx_len, digest = struct.unpack_from("<QQ", data, off)
    payload = data[off + 16:]
    if len(payload) != onnx_len or fnv1a64(payload) != digest:
        raise ValueError("fake engine payload is truncated or corrupt")
    return EngineFile((major, minor, patch), act, name, payload)
