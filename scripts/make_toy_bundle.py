#!/usr/bin/env python3
"""Write the toy multitask bundle (tests/support/toy_bundle.py) to a path.

usage: make_toy_bundle.py OUT.mtb [--seed N] [--samples N]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # a test fixture, not in the package

from support.toy_bundle import make_toy_bundle  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=3)
    a = p.parse_args()
    print(make_toy_bundle(a.out, seed=a.seed, samples=a.samples))
