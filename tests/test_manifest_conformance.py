"""The manifest conformance corpus (tests/data/manifests): the Python validator must accept or refuse
every case as cases.json says and name the same field the C++ parser names (tests/cpp/test_manifest.cpp
runs the same files). Also: the one writer round-trips, the JSON Schema (documentation) accepts every
good case, and the device-side model stays valid Python 3.8."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import jsonschema
import pytest
from mtedge_runtime import manifest as model
from mtedge_runtime.errors import BundleError, MtedgeError

from toolchain.bundle.manifest import schema, validate_manifest

CORPUS = Path(__file__).resolve().parent / "data" / "manifests"
CASES = json.loads((CORPUS / "cases.json").read_text())


def load(name: str):
    return json.loads((CORPUS / name).read_text())


def test_corpus_is_large_and_mostly_refusals():
    refusing = [f for f, e in CASES.items() if not e["accept"]]
    assert len(CASES) >= 30 and len(refusing) >= 25
    assert all(CASES[f]["field"] for f in refusing), "every refusing case names its field"
    assert sorted(p.name for p in CORPUS.glob("*.json") if p.name != "cases.json") == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_python_validator_agrees_with_the_corpus(name):
    expect = CASES[name]
    doc = load(name)
    if expect["accept"]:
        m = model.parse(doc)
        assert isinstance(m, model.Manifest)
        return
    with pytest.raises(model.ManifestError) as e:
        model.parse(doc)
    assert e.value.field == expect["field"]
    # the message starts with the JSON path and ends with a fix
    assert str(e.value).startswith(expect["field"] + ": ")
    assert "; " in str(e.value)


@pytest.mark.parametrize("name", sorted(f for f, e in CASES.items() if e["accept"]))
def test_writer_round_trips_good_cases_in_key_order(name):
    doc = load(name)
    out = model.parse(doc).to_dict()
    assert model.parse(out).to_dict() == out
    # segments order is the execution order: never sorted by the writer
    assert list(out["segments"]) == list(doc["segments"])
    assert list(out["variants"]) == list(doc["variants"])
    if name == "good_base.json":
        assert out == doc  # nothing lost or added (object key order is the writer's own)


@pytest.mark.parametrize("name", sorted(f for f, e in CASES.items() if e["accept"]))
def test_schema_documents_every_good_case(name):
    jsonschema.Draft202012Validator(schema()).validate(load(name))


def test_located_errors_name_the_file_and_stay_bundle_errors():
    doc = load("bad_variant_consumer_shape.json")
    with pytest.raises(BundleError) as e:
        validate_manifest(doc, "/x/y.mtb/manifest.json")
    assert str(e.value).startswith("/x/y.mtb/manifest.json: variants.fp32.segments.dhead.inputs: ")
    assert "[1, 8, 8, 8]" in str(e.value) and "[1, 4, 8, 8]" in str(e.value)


def test_typed_questions():
    m = model.parse(load("good_base.json"))
    assert m.segments_for(["depth"]) == ["trunk", "dhead"]
    assert m.segments_for(["depth", "zcls"]) == ["trunk", "zhead", "dhead"]  # manifest order, each once
    with pytest.raises(BundleError, match="unknown task"):
        m.segments_for(["nope"])
    files = [r.file for r in m.file_refs()]
    assert len(files) == len(set(files)) and "golden/input.npy" in files and "engines/host-cpu/fp32/trunk.blob" in files
    assert m.variant().name == "fp32" and m.variant("fp16").segments["trunk"].outputs[0].dtype == "float16"
    assert m.input.batch == 1 and m.engines["host-cpu"].verification == {"status": "passed"}


def test_unknown_keys_of_open_objects_survive_a_rewrite():
    doc = load("good_quantized_variant.json")
    out = model.parse(doc).to_dict()
    assert out["engines"]["host-cpu@int8"]["future_field"] == 1


def test_edits_are_checked_on_write(tmp_path):
    from toolchain.bundle.manifest import write_manifest

    m = model.parse(load("good_base.json"))
    write_manifest(tmp_path, m)
    assert json.loads((tmp_path / "manifest.json").read_text()) == load("good_base.json")
    bad = copy.deepcopy(m)
    bad.default_variant = "int8"
    with pytest.raises(BundleError, match="default_variant"):
        write_manifest(tmp_path, bad)
    assert json.loads((tmp_path / "manifest.json").read_text())["default_variant"] == "fp32"  # untouched


def test_device_model_is_python_38():
    src = (Path(model.__file__)).read_text()
    ast.parse(src, feature_version=(3, 8))
    assert "import numpy" not in src and "toolchain" not in src.split('"""', 2)[2]


@pytest.mark.parametrize("name", sorted(f for f, e in CASES.items() if e["accept"]))
def test_entries_know_their_own_names(name):
    m = model.parse(load(name))
    for table in (m.tasks, m.segments, m.variants, m.engines):
        assert all(entry.name == key for key, entry in table.items())


def _cpp_verdict(doc, root: Path):
    """None when the C++ parser accepts ``doc`` (loading then fails on the absent files), else the
    JSON path its error names."""
    from mtedge_runtime import BundleFormatError, Runtime

    (root / "manifest.json").write_text(json.dumps(doc))
    try:
        Runtime(str(root), backend="openvino")
    except BundleFormatError as e:
        msg = str(e)
        if msg.startswith("manifest.json: "):
            return msg[len("manifest.json: "):].split(": ")[0]
        raise
    except MtedgeError:
        return None  # past the manifest: a missing segment or golden file
    raise AssertionError("a bundle without files loaded")


def test_python_and_cpp_agree_beyond_the_corpus(tmp_path):
    """Fixed-seed single mutations of a good manifest (a key deleted or given another value of
    another type): both parsers accept or refuse together and name the same field."""
    import random

    root = tmp_path / "m.mtb"
    root.mkdir()
    base = load("good_quantized_variant.json")
    assert _cpp_verdict(base, root) is None

    def paths(o, p=()):
        if p:
            yield p
        items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()
        for k, v in items:
            yield from paths(v, p + (k,))

    values = [None, 0, -1, 2**40, 1.5, "", "x", "../a", "float16", "fp16", [], [1], {}, {"a": 1}, True, "a" * 64]
    rng, every, disagree = random.Random(26), list(paths(base)), []
    for _ in range(200):
        doc = copy.deepcopy(base)
        path = rng.choice(every)
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(values))
        try:
            model.parse(doc)
            py = None
        except model.ManifestError as e:
            py = e.field
        cpp = _cpp_verdict(doc, root)
        if py != cpp:
            disagree.append((path, py, cpp))
    assert not disagree, disagree[:5]
