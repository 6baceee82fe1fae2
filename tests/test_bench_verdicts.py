"""bench/prune_bounds.py's verdicts: a cut past a bound on the held-out test split counts for nothing."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from prune_bounds import derived, held_on_test, held_out_verdict  # noqa: E402


def _cell(pct: float, within_on_test: bool | None) -> dict:
    test = None if within_on_test is None else {"within": within_on_test}
    return {"flops_removed_pct": pct, "test": test, "seconds": 1.0}


def test_a_cut_past_a_bound_on_test_has_no_figure_and_an_empty_cut_needs_no_check():
    assert held_on_test(_cell(24.0, True)) == 24.0
    assert held_on_test(_cell(37.8, False)) is None
    assert held_on_test(_cell(0.0, None)) == 0.0


def test_the_held_out_verdict_ignores_baselines_past_their_bound_and_requires_pagcp_to_hold():
    # fashion-mt at x1 on the committed checkpoint: magnitude's larger cut breaks a bound on test
    cells = {"pagcp": _cell(24.0, True), "l1": _cell(6.7, True), "magnitude": _cell(37.8, False),
             "taylor": _cell(0.0, None), "lamp": _cell(19.6, False), "l1-margin": _cell(99.0, True)}
    assert held_out_verdict(cells) is True
    assert held_out_verdict({**cells, "magnitude": _cell(37.8, True)}) is False  # a baseline that held wins
    assert held_out_verdict({**cells, "pagcp": _cell(24.0, False)}) is False  # PAGCP's own cut must hold
    assert held_out_verdict({"pagcp": _cell(24.0, True)}) is None  # nothing to compare with


def test_derived_reads_both_verdicts_and_each_level():
    curve = {"pagcp": {"1": _cell(24.0, True), "0.5": _cell(10.0, True)},
             "magnitude": {"1": _cell(37.8, False), "0.5": _cell(12.0, True)}}
    d = derived(curve)
    assert d["pagcp_ge_every_baseline"] is False  # judged on val alone, magnitude's 37.8 wins
    assert d["pagcp_ge_every_baseline_held_out"] is True
    assert d["flops_removed_pct_held_on_test_at_recipe_bounds"] == {"pagcp": 24.0, "magnitude": None}
    assert d["pagcp_ge_every_baseline_held_out_by_level"] == {"0.5": False, "1": True}
