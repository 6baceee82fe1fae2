"""Run the installed `mtedge` console script (the one next to this interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MTEDGE = str(Path(sys.executable).with_name("mtedge"))


def mtedge(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    # test models (`support.layout_models:...`) resolve from tests/, as a user's package from theirs
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "MTEDGE_NO_PROGRESS": "1", "COLUMNS": "200", "PYTHONPATH": path}
    proc = subprocess.run([MTEDGE, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mtedge {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
