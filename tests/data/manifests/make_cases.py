"""Writes the manifest conformance corpus: good and bad manifest.json files plus cases.json.

Run from anywhere: ``python tests/data/manifests/make_cases.py``. The JSON files are committed;
this script only documents how each case differs from the base manifest. Both the Python validator
(tests/test_manifest_conformance.py) and the C++ parser (tests/cpp/test_manifest.cpp) must agree
with cases.json: accept or refuse, and for a refusal the JSON path of the field they name.
"""

import copy
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHA = "ab" * 32


def ref(file, nbytes=100):
    return {"file": file, "sha256": SHA, "bytes": nbytes}


def spec(name, shape, dtype="float32"):
    return {"name": name, "shape": shape, "dtype": dtype}


def vseg(file, ins, outs, **extra):
    return {**ref(file, 1000), "inputs": ins, "outputs": outs, **extra}


def base():
    """Two tasks sharing a trunk; heads deliberately not in alphabetical order; fp32 and fp16 variants."""
    feat16 = "float16"
    return {
        "format": "mtedge-bundle", "format_version": 1, "name": "corpus",
        "input": {"name": "image", "shape": [1, 3, 8, 8], "dtype": "float32", "layout": "NCHW",
                  "dynamic_batch": False,
                  "normalization": {"scale": 0.00392156862745098, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}},
        "tasks": {
            "zcls": {"kind": "classification", "metric": "accuracy", "higher_is_better": True, "allowed_drop": 1.0,
                     "output": "zcls", "segments": ["trunk", "zhead"]},
            "depth": {"kind": "depth", "metric": "abs_rel", "higher_is_better": False,
                      "output": "depth", "segments": ["trunk", "dhead"]},
        },
        "segments": {
            "trunk": {"inputs": ["image"], "outputs": ["feat"], "tasks": ["zcls", "depth"], "shared": True,
                      "flops": 1000, "params": 10},
            "zhead": {"inputs": ["feat"], "outputs": ["zcls"], "tasks": ["zcls"], "shared": False},
            "dhead": {"inputs": ["feat"], "outputs": ["depth"], "tasks": ["depth"], "shared": False},
        },
        "default_variant": "fp32",
        "variants": {
            "fp32": {"precision": "fp32", "config": None, "segments": {
                "trunk": vseg("segments/trunk.onnx", [spec("image", [1, 3, 8, 8])], [spec("feat", [1, 4, 8, 8])]),
                "zhead": vseg("segments/zhead.onnx", [spec("feat", [1, 4, 8, 8])], [spec("zcls", [1, 10])]),
                "dhead": vseg("segments/dhead.onnx", [spec("feat", [1, 4, 8, 8])], [spec("depth", [1, 1, 8, 8])]),
            }},
            "fp16": {"precision": "fp16", "config": None, "tolerance": {"zcls": 0.01, "depth": 0.01}, "segments": {
                "trunk": vseg("segments/fp16/trunk.onnx", [spec("image", [1, 3, 8, 8])], [spec("feat", [1, 4, 8, 8], feat16)],
                              precision="fp16"),
                "zhead": vseg("segments/fp16/zhead.onnx", [spec("feat", [1, 4, 8, 8], feat16)], [spec("zcls", [1, 10])],
                              precision="fp16"),
                "dhead": vseg("segments/fp16/dhead.onnx", [spec("feat", [1, 4, 8, 8], feat16)], [spec("depth", [1, 1, 8, 8])],
                              precision="fp16"),
            }},
        },
        "engines": {
            "host-cpu": {"backend": "openvino", "target": "host-cpu", "variant": "fp32", "precision": "fp32",
                         "device": "CPU", "built_with": {"openvino": "2026.4.1"},
                         "verification": {"status": "passed"},
                         "segments": {s: ref(f"engines/host-cpu/fp32/{s}.blob") for s in ("trunk", "zhead", "dhead")}},
        },
        "golden": {"input": ref("golden/input.npy"),
                   "outputs": {"zcls": ref("golden/zcls.npy"), "depth": ref("golden/depth.npy")},
                   "samples": 2, "source": "corpus"},
        "provenance": {"model": "corpus:model", "model_sha256": SHA, "recipe": None,
                       "created": "2026-12-04T00:00:00Z", "tools": {"mtedge": "0.1.0"}},
    }


def fp32(m, seg):
    return m["variants"]["fp32"]["segments"][seg]


def reorder(d, keys):
    return {k: d[k] for k in keys}


# name -> (mutation of the base manifest, None when accepted else the JSON path of the bad field)
CASES = {}


def case(name, field=None):
    def register(fn):
        CASES[name] = (fn, field)
        return fn
    return register


@case("good_base")
def _(m): pass


@case("good_minimal")  # every optional key removed
def _(m):
    del m["engines"], m["variants"]["fp16"], m["golden"]["source"], m["input"]["dynamic_batch"]
    del m["segments"]["trunk"]["flops"], m["segments"]["trunk"]["params"], m["variants"]["fp32"]["config"]
    for t in m["tasks"].values():
        t.pop("higher_is_better"), t.pop("allowed_drop", None)
    del m["provenance"]["recipe"]


@case("good_quantized_variant")
def _(m):
    v = copy.deepcopy(m["variants"]["fp32"])
    v.update(precision="int8", tolerance={"zcls": 0.05, "depth": 0.05}, calibration={"split": "val", "samples": 8},
             metrics={"zcls": {"val": {"fp32": 0.9, "variant": 0.89}}})
    v["segments"]["trunk"].update(file="segments/int8/trunk.onnx", precision="mixed", float_layers=["/conv0/Conv"])
    m["variants"]["int8"] = v
    m["engines"]["host-cpu@int8"] = {"backend": "openvino", "variant": "int8", "segments": {}, "future_field": 1}


@case("good_width_config")  # a slimmable width configuration with its own golden outputs
def _(m):
    v = copy.deepcopy(m["variants"]["fp32"])
    v.update(config={"encoder": 0.5, "decoders": {"zcls": 0.5}}, flops=500, latency_ms=0.25, metrics={"zcls": 0.8},
             golden={"outputs": {"zcls": ref("golden/w50/zcls.npy")}})
    m["variants"]["w50"] = v


@case("good_segment_order_not_alphabetical")  # order is the execution order, not sorted
def _(m):
    m["segments"] = reorder(m["segments"], ["trunk", "dhead", "zhead"])


@case("good_dotted_names")  # names may contain '.': the key is the name, never a path split
def _(m):
    m["tasks"]["heads.depth"] = m["tasks"].pop("depth")
    m["segments"]["trunk"]["tasks"] = ["zcls", "heads.depth"]
    m["segments"]["dhead"]["tasks"] = ["heads.depth"]
    m["golden"]["outputs"]["heads.depth"] = m["golden"]["outputs"].pop("depth")


@case("bad_dotted_task_output", "tasks.heads.depth.output")
def _(m):
    m["tasks"]["heads.depth"] = m["tasks"].pop("depth")
    m["tasks"]["heads.depth"]["output"] = "zcls"
    del m["golden"]["outputs"]["depth"]


@case("bad_not_an_object", "top level")
def _(m):
    return [m]


@case("bad_format", "format")
def _(m): m["format"] = "onnx-bundle"


@case("bad_format_version", "format_version")
def _(m): m["format_version"] = 2


@case("bad_missing_name", "name")
def _(m): del m["name"]


@case("bad_name_path", "name")
def _(m): m["name"] = "../evil"


@case("bad_unknown_top_level_key", "segmnets")
def _(m): m["segmnets"] = {}


@case("bad_input_shape_empty", "input.shape")
def _(m): m["input"]["shape"] = []


@case("bad_input_shape_zero_dim", "input.shape")
def _(m): m["input"]["shape"] = [1, 0, 8, 8]


@case("bad_input_shape_rank_9", "input.shape")
def _(m): m["input"]["shape"] = [1] * 9


@case("bad_input_shape_too_many_elements", "input.shape")
def _(m): m["input"]["shape"] = [65536, 65536, 65536]


@case("bad_input_dtype", "input.dtype")
def _(m): m["input"]["dtype"] = "float16"


@case("bad_input_layout", "input.layout")
def _(m): m["input"]["layout"] = "NHWC"


@case("bad_normalization_std_zero", "input.normalization.std[1]")
def _(m): m["input"]["normalization"]["std"] = [0.25, 0.0, 0.25]


@case("bad_tasks_empty", "tasks")
def _(m): m["tasks"] = {}


@case("bad_task_kind", "tasks.depth.kind")
def _(m): m["tasks"]["depth"]["kind"] = "depth-estimation"


@case("bad_task_missing_output", "tasks.depth.output")
def _(m): del m["tasks"]["depth"]["output"]


@case("bad_task_unknown_segment", "tasks.depth.segments")
def _(m): m["tasks"]["depth"]["segments"] = ["trunk", "dhead", "nope"]


@case("bad_task_segments_not_closed", "tasks.depth.segments")
def _(m): m["tasks"]["depth"]["segments"] = ["dhead"]  # dhead reads trunk's feat


@case("bad_task_output_not_its_own", "tasks.depth.output")
def _(m): m["tasks"]["depth"]["output"] = "zcls"  # produced, but by a segment the task does not list


@case("bad_task_name_with_slash", "tasks.a/b")
def _(m): m["tasks"]["a/b"] = m["tasks"].pop("depth")


@case("bad_segments_not_topological", "segments.zhead.inputs")
def _(m): m["segments"] = reorder(m["segments"], ["zhead", "trunk", "dhead"])


@case("bad_segment_two_producers", "segments.dhead.outputs")
def _(m): m["segments"]["dhead"]["outputs"] = ["zcls"]


@case("bad_segment_inputs_empty", "segments.trunk.inputs")
def _(m): m["segments"]["trunk"]["inputs"] = []


@case("bad_segment_missing_shared", "segments.zhead.shared")
def _(m): del m["segments"]["zhead"]["shared"]


@case("bad_default_variant_unknown", "default_variant")
def _(m): m["default_variant"] = "int8"


@case("bad_variant_precision", "variants.fp16.precision")
def _(m): m["variants"]["fp16"]["precision"] = "int4"


@case("bad_variant_unknown_key", "variants.fp32.toleranse")
def _(m): m["variants"]["fp32"]["toleranse"] = {}


@case("bad_variant_without_segments", "variants.fp16.segments")
def _(m): del m["variants"]["fp16"]["segments"]


@case("bad_variant_segment_missing_outputs", "variants.fp32.segments.zhead.outputs")
def _(m): del fp32(m, "zhead")["outputs"]


@case("bad_variant_missing_segment", "variants.fp32.segments")
def _(m): del m["variants"]["fp32"]["segments"]["zhead"]


@case("bad_variant_extra_segment", "variants.fp32.segments.extra")
def _(m): m["variants"]["fp32"]["segments"]["extra"] = copy.deepcopy(fp32(m, "zhead"))


@case("bad_variant_tensor_names_differ", "variants.fp32.segments.trunk.outputs")
def _(m): fp32(m, "trunk")["outputs"][0]["name"] = "features"


@case("bad_variant_consumer_shape", "variants.fp32.segments.dhead.inputs")
def _(m): fp32(m, "dhead")["inputs"][0]["shape"] = [1, 8, 8, 8]


@case("bad_variant_consumer_dtype", "variants.fp16.segments.zhead.inputs")
def _(m): m["variants"]["fp16"]["segments"]["zhead"]["inputs"][0]["dtype"] = "float32"


@case("bad_variant_model_input_shape", "variants.fp32.segments.trunk.inputs")
def _(m): fp32(m, "trunk")["inputs"][0]["shape"] = [1, 3, 16, 16]


@case("bad_task_output_float16", "variants.fp16.segments.dhead.outputs")
def _(m): m["variants"]["fp16"]["segments"]["dhead"]["outputs"][0]["dtype"] = "float16"


@case("bad_tensor_dtype", "variants.fp32.segments.zhead.outputs[0].dtype")
def _(m): fp32(m, "zhead")["outputs"][0]["dtype"] = "int8"


@case("bad_tensor_missing_dtype", "variants.fp32.segments.zhead.outputs[0].dtype")
def _(m): del fp32(m, "zhead")["outputs"][0]["dtype"]


@case("bad_tensor_shape_negative", "variants.fp32.segments.zhead.outputs[0].shape")
def _(m): fp32(m, "zhead")["outputs"][0]["shape"] = [1, -10]


@case("bad_file_absolute", "variants.fp32.segments.trunk.file")
def _(m): fp32(m, "trunk")["file"] = "/etc/passwd"


@case("bad_file_dotdot", "variants.fp32.segments.trunk.file")
def _(m): fp32(m, "trunk")["file"] = "segments/../../trunk.onnx"


@case("bad_file_backslash", "variants.fp32.segments.trunk.file")
def _(m): fp32(m, "trunk")["file"] = "segments\\trunk.onnx"


@case("bad_sha256_uppercase", "variants.fp32.segments.trunk.sha256")
def _(m): fp32(m, "trunk")["sha256"] = SHA.upper()


@case("bad_bytes_zero", "variants.fp32.segments.trunk.bytes")
def _(m): fp32(m, "trunk")["bytes"] = 0


@case("bad_engine_unknown_variant", "engines.host-cpu.variant")
def _(m): m["engines"]["host-cpu"]["variant"] = "int8"


@case("bad_engine_backend", "engines.host-cpu.backend")
def _(m): m["engines"]["host-cpu"]["backend"] = "onnxruntime"


@case("bad_engine_file", "engines.host-cpu.segments.trunk.file")
def _(m): m["engines"]["host-cpu"]["segments"]["trunk"]["file"] = "../trunk.blob"


@case("bad_golden_samples_zero", "golden.samples")
def _(m): m["golden"]["samples"] = 0


@case("bad_golden_samples_huge", "golden.samples")
def _(m): m["golden"]["samples"] = 1 << 40


@case("bad_golden_missing_input", "golden.input")
def _(m): del m["golden"]["input"]


@case("bad_golden_output_unknown_task", "golden.outputs.nope")
def _(m): m["golden"]["outputs"]["nope"] = ref("golden/nope.npy")


@case("bad_provenance_missing", "provenance")
def _(m): del m["provenance"]


@case("bad_provenance_sha256", "provenance.model_sha256")
def _(m): m["provenance"]["model_sha256"] = "not-a-hash"


def main():
    for old in HERE.glob("*.json"):
        old.unlink()
    expectations = {}
    for name, (mutate, field) in CASES.items():
        m = base()
        doc = mutate(m)
        doc = m if doc is None else doc
        (HERE / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        expectations[f"{name}.json"] = {"accept": field is None, "field": field}
    (HERE / "cases.json").write_text(json.dumps(expectations, indent=2) + "\n")
    print(f"{len(CASES)} cases written to {HERE}")


if __name__ == "__main__":
    main()
