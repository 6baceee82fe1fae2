"""A minimal multitask bundle for the targets/build/profile tests, with fp16 and int8 variants
(``support/toy_bundle.py`` is the runtime's toy: more tasks, width variants). Follows
docs/bundle-format.md exactly:

    image [1,3,16,16] ─ trunk (Conv+Relu, Conv/2+Relu) ─┬─ enc.feat [1,8,16,16] ─ seg head (1x1 Conv) → seg
                                                        └─ enc.deep [1,16,8,8] ─ cls head (GAP, Flatten, Gemm) → cls

Variants: ``fp32`` (default), ``fp16`` (float16 inside, float32 at the model input and task
outputs, per rule 3) and ``int8`` (Q/DQ in front of every Conv/Gemm input and weight, with a
per-task ``tolerance``). Golden outputs come from onnxruntime running the fp32 segments.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from toolchain.bundle.executor import ort_session, run_dag, session_runner
from toolchain.bundle.manifest import validate_manifest

OPSET = 17
SAMPLES = 3


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ref(root: Path, rel: str) -> dict:
    p = root / rel
    return {"file": rel, "sha256": _sha(p), "bytes": p.stat().st_size}


def _weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    return {"c1.w": w(8, 3, 3, 3), "c1.b": w(8), "c2.w": w(16, 8, 3, 3), "c2.b": w(16),
            "seg.w": w(2, 8, 1, 1), "seg.b": w(2), "fc.w": w(5, 16), "fc.b": w(5)}


def _vi(name: str, shape: list[int], dtype: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _segment_graphs(W: dict[str, np.ndarray]) -> dict[str, tuple]:
    """(nodes, initializer names, inputs [(name, shape)], outputs [(name, shape)]) per segment."""
    trunk = [
        helper.make_node("Conv", ["image", "c1.w", "c1.b"], ["t1"], name="/trunk/conv1/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["t1"], ["enc.feat"], name="/trunk/relu1/Relu"),
        helper.make_node("Conv", ["enc.feat", "c2.w", "c2.b"], ["t2"], name="/trunk/conv2/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["t2"], ["enc.deep"], name="/trunk/relu2/Relu"),
    ]
    seg = [helper.make_node("Conv", ["enc.feat", "seg.w", "seg.b"], ["seg"], name="/seg/head/Conv",
                            kernel_shape=[1, 1])]
    cls = [
        helper.make_node("GlobalAveragePool", ["enc.deep"], ["g"], name="/cls/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["g"], ["f"], name="/cls/flatten/Flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["cls"], name="/cls/fc/Gemm", transB=1),
    ]
    return {
        "trunk": (trunk, ["c1.w", "c1.b", "c2.w", "c2.b"], [("image", [1, 3, 16, 16])],
                  [("enc.feat", [1, 8, 16, 16]), ("enc.deep", [1, 16, 8, 8])]),
        "seg": (seg, ["seg.w", "seg.b"], [("enc.feat", [1, 8, 16, 16])], [("seg", [1, 2, 16, 16])]),
        "cls": (cls, ["fc.w", "fc.b"], [("enc.deep", [1, 16, 8, 8])], [("cls", [1, 5])]),
    }


MODEL_INPUT = "image"
TASK_OUTPUTS = {"seg", "cls"}


def _model(name: str, spec: tuple, W: dict[str, np.ndarray], precision: str,
           act_scale: dict[str, float]) -> onnx.ModelProto:
    nodes, init_names, ins, outs = spec
    nodes = list(nodes)
    inits = [numpy_helper.from_array(W[n], n) for n in init_names]
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16

    def boundary_dtype(t: str) -> int:
        return f32 if precision != "fp16" or t == MODEL_INPUT or t in TASK_OUTPUTS else f16

    if precision == "fp16":
        inits = [numpy_helper.from_array(W[n].astype(np.float16), n) for n in init_names]
        pre, post = [], []
        renames: dict[str, str] = {}
        for t, _ in ins:
            if boundary_dtype(t) == f32:  # model input: cast to fp16 inside
                renames[t] = t + ".h"
                pre.append(helper.make_node("Cast", [t], [t + ".h"], name=f"/{name}/in_cast/Cast", to=f16))
        for t, _ in outs:
            if boundary_dtype(t) == f32:  # task output: compute fp16, cast back
                renames[t + "@out"] = t + ".h"
                post.append(helper.make_node("Cast", [t + ".h"], [t], name=f"/{name}/out_cast/Cast", to=f32))
        out_names = {t for t, _ in outs if boundary_dtype(t) == f32}
        fixed = []
        for n in nodes:
            n2 = onnx.NodeProto()
            n2.CopyFrom(n)
            n2.input[:] = [renames.get(i, i) for i in n.input]
            n2.output[:] = [o + ".h" if o in out_names else o for o in n.output]
            fixed.append(n2)
        nodes = pre + fixed + post
    elif precision == "int8":
        qnodes = []
        for n in nodes:
            if n.op_type not in ("Conv", "Gemm"):
                qnodes.append(n)
                continue
            n2 = onnx.NodeProto()
            n2.CopyFrom(n)
            for idx in (0, 1):
                src = n.input[idx]
                # 7-bit weights (as NNCF's overflow fix writes them): on CPUs without VNNI, OpenVINO's
                # int8 kernels add pairs of 8-bit products in int16 (AVX2 vpmaddubsw), which saturates
                # with full-range weights and fails the build's verification on such hosts
                scale = act_scale[src] if idx == 0 else float(np.abs(W[src]).max()) / 63.0
                s, z = f"{n.name}/q{idx}.scale", f"{n.name}/q{idx}.zp"
                inits += [numpy_helper.from_array(np.array(scale, np.float32), s),
                          numpy_helper.from_array(np.array(0, np.int8), z)]
                qnodes += [helper.make_node("QuantizeLinear", [src, s, z], [f"{n.name}/q{idx}"],
                                            name=f"{n.name}/q{idx}/QuantizeLinear"),
                           helper.make_node("DequantizeLinear", [f"{n.name}/q{idx}", s, z], [f"{n.name}/dq{idx}"],
                                            name=f"{n.name}/q{idx}/DequantizeLinear")]
                n2.input[idx] = f"{n.name}/dq{idx}"
            qnodes.append(n2)
        nodes = qnodes
    graph = helper.make_graph(nodes, name, [_vi(t, s, boundary_dtype(t)) for t, s in ins],
                              [_vi(t, s, boundary_dtype(t)) for t, s in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mtedge-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


INPUT = {"name": "image", "shape": [1, 3, 16, 16], "dtype": "float32", "layout": "NCHW", "dynamic_batch": False,
         "normalization": {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
TASKS = {
    "seg": {"kind": "segmentation", "metric": "miou", "higher_is_better": True, "allowed_drop": 1.0,
            "output": "seg", "segments": ["trunk", "seg"]},
    "cls": {"kind": "classification", "metric": "accuracy", "higher_is_better": True,
            "allowed_drop": 1.0, "output": "cls", "segments": ["trunk", "cls"]},
}
SEGMENTS = {
    "trunk": {"inputs": ["image"], "outputs": ["enc.feat", "enc.deep"], "tasks": ["seg", "cls"],
              "shared": True, "flops": 2 * 8 * 27 * 256 + 2 * 16 * 72 * 64, "params": 8 * 28 + 16 * 73},
    "seg": {"inputs": ["enc.feat"], "outputs": ["seg"], "tasks": ["seg"], "shared": False,
            "flops": 2 * 2 * 8 * 256, "params": 18},
    "cls": {"inputs": ["enc.deep"], "outputs": ["cls"], "tasks": ["cls"], "shared": False,
            "flops": 2 * 5 * 16, "params": 85},
}


def make_toy_bundle(path: str | Path, *, variants: tuple[str, ...] = ("fp32", "fp16", "int8"),
                    seed: int = 0, name: str = "toy") -> Path:
    """Write a complete, schema-valid toy bundle at ``path`` (a new directory) and return it."""
    root = Path(path)
    (root / "segments").mkdir(parents=True)
    (root / "golden").mkdir()
    rng = np.random.default_rng(seed)
    W = _weights(rng)
    specs = _segment_graphs(W)
    x = rng.standard_normal((SAMPLES, 3, 16, 16)).astype(np.float32)

    def write_variant(v: str, models: dict[str, onnx.ModelProto]) -> dict:
        segs = {}
        for s, spec in specs.items():
            rel = f"segments/{s}.onnx" if v == "fp32" else f"segments/{s}.{v}.onnx"
            onnx.save(models[s], root / rel)

            def spec_list(items: list) -> list[dict]:
                return [{"name": t, "shape": sh,
                         "dtype": "float16" if v == "fp16" and t not in TASK_OUTPUTS and t != MODEL_INPUT
                         else "float32"} for t, sh in items]

            segs[s] = {**_ref(root, rel), "inputs": spec_list(spec[2]), "outputs": spec_list(spec[3])}
        return {"precision": v, "config": None, "segments": segs}

    # fp32 first: it gives the golden outputs and the activation ranges for int8 scales.
    fp32 = {s: _model(s, spec, W, "fp32", {}) for s, spec in specs.items()}
    np.save(root / "golden/input.npy", x)
    provenance = {"model": "tests:toy", "model_sha256": hashlib.sha256(b"toy").hexdigest(),
                  "recipe": None, "created": "2026-01-01T00:00:00Z",
                  "tools": {"mtedge": "0.1.0", "onnx": onnx.__version__}}
    manifest = {"input": INPUT, "tasks": TASKS, "segments": SEGMENTS, "variants": {"fp32": write_variant("fp32", fp32)}}
    # the fp32 DAG, typed, before its golden outputs exist (the executor walks a checked manifest)
    fp32_dag = validate_manifest({"format": "mtedge-bundle", "format_version": 1, "name": name, **manifest,
                                  "default_variant": "fp32", "provenance": provenance,
                                  "golden": {"input": _ref(root, "golden/input.npy"), "outputs": {},
                                             "samples": SAMPLES}})
    runners = {s: session_runner(ort_session(m)) for s, m in fp32.items()}
    golden: dict[str, list[np.ndarray]] = {t: [] for t in TASKS}
    amax: dict[str, float] = {}
    for i in range(SAMPLES):
        env = run_dag(fp32_dag, "fp32", runners, x[i:i + 1])
        for t in ("image", "enc.feat", "enc.deep"):
            amax[t] = max(amax.get(t, 0.0), float(np.abs(env[t]).max()))
        for t in golden:
            golden[t].append(env[t])
    amax["f"] = amax["enc.deep"]  # GAP of a ReLU output is bounded by its max
    act_scale = {t: v / 127.0 for t, v in amax.items()}

    variants_json: dict[str, dict] = {}
    for v in variants:
        models = fp32 if v == "fp32" else {s: _model(s, spec, W, v, act_scale) for s, spec in specs.items()}
        entry = manifest["variants"]["fp32"] if v == "fp32" else write_variant(v, models)
        if v == "int8":
            entry["tolerance"] = {"seg": 0.15, "cls": 0.15}
            entry["calibration"] = {"method": "minmax", "samples": SAMPLES}
        variants_json[v] = entry

    for t, arrs in golden.items():
        np.save(root / f"golden/{t}.npy", np.concatenate(arrs).astype(np.float32))

    manifest = {
        "format": "mtedge-bundle", "format_version": 1, "name": name, "input": INPUT, "tasks": TASKS,
        "segments": SEGMENTS, "default_variant": "fp32", "variants": variants_json, "engines": {},
        "golden": {"input": _ref(root, "golden/input.npy"),
                   "outputs": {t: _ref(root, f"golden/{t}.npy") for t in golden},
                   "samples": SAMPLES, "source": f"random normal, seed {seed}"},
        "provenance": provenance,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
