"""Pytest fixtures shared by test_targets*.py / test_build*.py / test_profile*.py (import them by name)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from doubles.toy_bundle import make_toy_bundle

DOUBLES = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def _toy_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_bundle(tmp_path_factory.mktemp("master") / "toy.mtb")


@pytest.fixture
def toy_bundle(_toy_master: Path, tmp_path: Path) -> Path:
    """A fresh copy of the toy bundle (fp32 default, fp16, int8) that a test may modify."""
    dst = tmp_path / "toy.mtb"
    shutil.copytree(_toy_master, dst)
    return dst


@pytest.fixture
def trtexec_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Put the trtexec double first on PATH; returns the JSON-lines log of its calls."""
    log = tmp_path / "trtexec-calls.jsonl"
    monkeypatch.setenv("PATH", f"{DOUBLES}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    return log
