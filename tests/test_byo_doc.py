"""docs/byo.md runs as written: every bash and python block, in order, in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "byo.md"


@pytest.mark.slow
def test_byo_walkthrough_runs_as_written(tmp_path):
    blocks = re.findall(r"```(bash|python)\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 8, "docs/byo.md lost its walk-through"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MTEDGE_NO_PROGRESS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for i, (lang, code) in enumerate(blocks):
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"block {i} ({lang}) failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        outputs.append(proc.stdout + proc.stderr)

    recipe = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    assert recipe["outputs"] == ["shape", "mask"]
    assert recipe["tasks"]["shape"]["kind"] == "classification" and recipe["tasks"]["mask"]["kind"] == "segmentation"
    assert recipe["input"]["shape"] == [1, 3, 40, 40]
    assert (tmp_path / "report" / "report.json").exists()
    # the pruned model runs in the C++ runtime and its prediction agrees with the mask it segments
    out = np.load(tmp_path / "out.npz")
    assert out["shape"].shape == (1, 3) and out["mask"].shape == (1, 2, 40, 40)
    assert "verify" in " ".join(outputs).lower()
