#!/usr/bin/env python3
"""Copy a bundle and build its TensorRT engines with the fake ``tensorrt`` module (TEST DOUBLE).

usage: make_engines.py SRC.mtb DST.mtb --tensorrt 10.3.0 [--target jetson-agx-orin-64gb]

The real `mtedge build` path (toolchain.targets.build) runs against tests/doubles/fake_tensorrt.py,
so the engine files it records are exactly what the Python face of the double writes and what
the fake libnvinfer (engine_file.h) reads: the C++ tests load them through the TensorRT backend.
"""
import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # toolchain from a checkout too; tests/doubles

from doubles.fake_tensorrt import make_fake_tensorrt  # noqa: E402
from toolchain.targets import build as b  # noqa: E402
from toolchain.targets.plan import BuildOptions  # noqa: E402
from toolchain.targets.profile import load_profile  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--tensorrt", required=True, help="version the fake TensorRT reports, e.g. 10.3.0")
    p.add_argument("--target", default="jetson-agx-orin-64gb")
    a = p.parse_args()
    dst = Path(a.dst)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(a.src, dst)
    sys.modules["tensorrt"] = make_fake_tensorrt(a.tensorrt)
    result = b.build(dst, load_profile(a.target), BuildOptions())
    for key, entry in result.entries.items():
        print(f"{key}: {entry['variant']} ({len(entry['segments'])} engines, TensorRT {a.tensorrt})")
