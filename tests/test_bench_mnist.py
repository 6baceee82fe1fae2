"""bench/mnist_mt.py reads the MNIST pickle without running code from it."""

from __future__ import annotations

import gzip
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _write(path: Path, obj) -> Path:
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # ndarrays as _reconstruct + raw bytes, as in the classic file
    return path


def test_reads_the_classic_arrays_layout(tmp_path):
    from mnist_mt import read_mnist

    rng = np.random.default_rng(0)
    splits = tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)) for n in (5, 3, 4))
    out = read_mnist(_write(tmp_path / "m.pkl.gz", splits))
    assert {k: v[0].shape for k, v in out.items()} == {"train": (5, 28, 28), "val": (3, 28, 28), "test": (4, 28, 28)}
    np.testing.assert_array_equal(out["test"][1], splits[2][1])
    np.testing.assert_allclose(out["val"][0].reshape(3, 784), splits[1][0])


class _Planted:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless, but a global that is not numpy's array reconstruction


def test_refuses_a_pickle_that_names_any_other_global(tmp_path):
    from mnist_mt import read_mnist

    path = _write(tmp_path / "bad.pkl.gz", ((np.zeros((1, 784), np.float32), _Planted()), (), ()))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (posix|os|nt)\.getcwd"):
        read_mnist(path)
