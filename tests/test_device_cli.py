"""`mtedge-run` (mtedge_runtime.cli), the device's command line, on the toy bundle with OpenVINO.

The same command runs in a clean numpy-only venv through the TensorRT double in
scripts/test-device-venv.sh (make test-device-venv); here each outcome is pinned: parity passes,
parity fails with exit 1, errors are one `error:` line with exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtedge_runtime.cli import main
from mtedge_runtime.golden import read_golden
from support.toy_bundle import make_toy_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_toy_bundle(tmp_path_factory.mktemp("device") / "toy.mtb", seed=5, samples=2)


def _rows(text: str) -> dict:
    """The parity table's rows: {task: (max_abs_err, tolerance, result)}."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in ("ok", "FAIL"):
            rows[parts[0]] = (float(parts[1]), float(parts[2]), parts[3])
    return rows


def test_verify_passes_every_task(bundle, capsys):
    assert main([str(bundle), "--verify", "--backend", "openvino", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert set(rows) == {"cls", "seg", "depth", "normals"}
    assert all(r[2] == "ok" and r[0] <= r[1] for r in rows.values())
    assert "4/4 tasks within tolerance" in out


def test_verify_fails_with_exit_1_outside_the_tolerance(bundle, tmp_path, capsys):
    # A recorded tolerance of 0 for one task: OpenVINO and onnxruntime round differently.
    damaged = tmp_path / "tight.mtb"
    shutil.copytree(bundle, damaged)
    m = json.loads((damaged / "manifest.json").read_text())
    m["variants"][m["default_variant"]]["tolerance"] = {"seg": 0.0}
    (damaged / "manifest.json").write_text(json.dumps(m))
    assert main([str(damaged), "--verify", "--backend", "openvino", "--tasks", "seg,cls"]) == 1
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["seg"][2] == "FAIL" and rows["seg"][1] == 0.0 and rows["cls"][2] == "ok"
    assert "FAILED: seg" in out


def test_input_prints_output_shapes_and_iters_a_median(bundle, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, read_golden(bundle).inputs[0].astype(np.float64))  # one sample, no batch axis, float64
    assert main([str(bundle), "--backend", "openvino", "--task", "seg", "--input", str(x), "--iters", "3"]) == 0
    out = capsys.readouterr().out
    assert "converted to float32" in out
    assert "seg" in out and "[1, 4, 19, 23]" in out and "depth" not in out.split("outputs for")[1]
    assert "median" in out and "over 3 calls" in out


@pytest.mark.parametrize("args, message", [
    (["--tasks", "sgm"], "unknown task(s) 'sgm'; this bundle has tasks: cls, seg, depth, normals"),
    (["--engine-target", "jetson-orin-nx-16gb"], "unknown engine target 'jetson-orin-nx-16gb'"),
    (["--variant", "c50", "--verify"], "variant 'c50' has no golden outputs of its own"),
    (["--input", "missing.npy"], "--input missing.npy: cannot read it"),
])
def test_errors_are_one_line_with_exit_2(bundle, capsys, args, message):
    assert main([str(bundle), "--backend", "openvino"] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_damaged_golden_file_is_named(bundle, tmp_path, capsys):
    damaged = tmp_path / "damaged.mtb"
    shutil.copytree(bundle, damaged)
    with open(damaged / "golden" / "seg.npy", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    assert main([str(damaged), "--verify", "--backend", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "golden output of task 'seg' file golden/seg.npy" in err and "copy the bundle again" in err


def test_missing_bundle_and_console_script(tmp_path):
    # The installed console script, as a device user calls it: no traceback, exit 2.
    script = shutil.which("mtedge-run", path=str(Path(sys.executable).parent))
    assert script, "mtedge-run is not installed next to this python (runtime/pyproject.toml [project.scripts])"
    r = subprocess.run([script, str(tmp_path / "nope.mtb"), "--verify"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
