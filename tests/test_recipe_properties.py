"""Property-based tests of the recipe contract (toolchain/recipe.py): every valid document
round-trips through Recipe.to_dict, and every invalid one raises SpecError -- never another
exception. Properties of the existing keys only; new keys keep the same contract."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.errors import SpecError
from toolchain.metrics import METRICS
from toolchain.recipe import DATA_KINDS, TASK_KINDS, parse_recipe

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def valid_docs(draw) -> dict:
    channels = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 4)), channels, draw(st.integers(1, 512)), draw(st.integers(1, 512))]
    n_norm = draw(st.sampled_from([1, channels]))
    doc = {
        "name": draw(names),
        "input": {"shape": shape, "layout": "NCHW",
                  "normalization": {"scale": draw(st.floats(1e-6, 10)),
                                    "mean": draw(st.lists(st.floats(-10, 10), min_size=n_norm, max_size=n_norm)),
                                    "std": draw(st.lists(st.floats(1e-3, 10), min_size=n_norm, max_size=n_norm))}},
        "data": {"kind": draw(st.sampled_from(DATA_KINDS)), "val_count": draw(st.integers(1, 10**6)),
                 "calibration_count": draw(st.integers(1, 10**6))},
        "tasks": {},
    }
    # a user's data kinds name their source (what the loaders read is checked when they read it)
    doc["data"].update({"images": {"path": "images/"}, "arrays": {"path": "data.npz"},
                        "python": {"source": "my_pkg.data:batches"}}.get(doc["data"]["kind"], {}))
    if draw(st.booleans()):
        doc["model"] = "zoo:" + draw(names)
    for t in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
        task = {"kind": draw(st.sampled_from(TASK_KINDS)), "metric": draw(st.sampled_from(sorted(METRICS))),
                "allowed_drop": draw(finite)}
        if draw(st.booleans()):
            task["max_relax"] = draw(st.floats(1, 100))
        doc["tasks"][t] = task
    if draw(st.booleans()):
        doc["hooks"] = {"finetune": "pkg.mod:" + draw(names)}
    return doc


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@SETTINGS
@given(valid_docs())
def test_valid_documents_round_trip(doc):
    r = parse_recipe(doc)
    assert parse_recipe(r.to_dict()) == r
    assert set(r.tasks) == set(doc["tasks"]) and list(r.input.shape) == doc["input"]["shape"]
    assert all(math.isfinite(t.allowed_drop) and t.allowed_drop >= 0 for t in r.tasks.values())


@SETTINGS
@given(valid_docs(), st.data())
def test_any_corruption_is_a_spec_error_or_a_valid_recipe(doc, data):
    paths = list(_paths(doc))[1:]
    path = data.draw(st.sampled_from(paths))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    try:
        r = parse_recipe(doc)
    except SpecError as e:
        assert str(e).startswith("recipe"), e
        return
    assert repr(parse_recipe(r.to_dict())) == repr(r)  # whatever it accepted round-trips (repr: NaN == NaN)


@SETTINGS
@given(json_values)
def test_any_document_at_all_is_a_spec_error_or_a_recipe(doc):
    try:
        parse_recipe(doc)
    except SpecError:
        pass
