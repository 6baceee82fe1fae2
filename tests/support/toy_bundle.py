"""A small multitask bundle built directly with ``onnx.helper`` (format version 1).

Shape of the toy network (width C per variant; ``fp32`` has C=8, ``c50`` has C=4)::

    image 1x3x19x23 ─ trunk ─┬─ enc.s1 1xCx19x23 ──────────────┬─ depth  (3x3 conv)     -> depth   1x1x19x23
                             │                                 └─ seg    (1x1 convs,
                             └─ enc.s2 1x2Cx10x12 ─┬─ neck ─ neck.out ─┘  resize + add) -> seg     1x4x19x23
                                                   │          └────────── normals (1x1)  -> normals 1x3x10x12
                                                   └─ cls (GAP + Gemm)                   -> cls     1x5

Odd spatial sizes on purpose; ``neck`` is shared by two tasks, ``trunk`` by all four. Golden
outputs are computed with onnxruntime, which is also the independent reference in tests.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from toolchain.bundle import Bundle, validate_manifest
from toolchain.bundle.executor import ReferenceExecutor

INPUT_SHAPE = (1, 3, 19, 23)
TASKS = {  # task -> (kind, segments)
    "cls": ("classification", ["trunk", "cls"]),
    "seg": ("segmentation", ["trunk", "neck", "seg"]),
    "depth": ("depth", ["trunk", "depth"]),
    "normals": ("regression", ["trunk", "neck", "normals"]),
}
SEGMENTS = {  # segment -> (inputs, outputs), in topological order
    "trunk": (["image"], ["enc.s1", "enc.s2"]),
    "neck": (["enc.s2"], ["neck.out"]),
    "cls": (["enc.s2"], ["cls"]),
    "seg": (["enc.s1", "neck.out"], ["seg"]),
    "depth": (["enc.s1"], ["depth"]),
    "normals": (["neck.out"], ["normals"]),
}
WIDTHS = {"fp32": 8, "c50": 4}


def _shapes(c: int) -> dict[str, tuple[int, ...]]:
    _, _, h, w = INPUT_SHAPE
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    return {"image": INPUT_SHAPE, "enc.s1": (1, c, h, w), "enc.s2": (1, 2 * c, h2, w2),
            "neck.out": (1, c, h2, w2), "cls": (1, 5), "seg": (1, 4, h, w),
            "depth": (1, 1, h, w), "normals": (1, 3, h2, w2)}


def _segment_model(name: str, c: int, rng: np.random.Generator) -> onnx.ModelProto:
    shapes = _shapes(c)
    inits: list[onnx.TensorProto] = []

    def weight(wname: str, *shape: int) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        arr = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, wname))
        return wname

    def conv(x: str, out: str, cin: int, cout: int, k: int, stride: int = 1) -> onnx.NodeProto:
        return helper.make_node("Conv", [x, weight(f"{out}.w", cout, cin, k, k), weight(f"{out}.b", cout)],
                                [out], kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride] * 2)

    R = helper.make_node
    if name == "trunk":
        nodes = [conv("image", "c1", 3, c, 3), R("Relu", ["c1"], ["enc.s1"]),
                 conv("enc.s1", "c2", c, 2 * c, 3, 2), R("Relu", ["c2"], ["enc.s2"])]
    elif name == "neck":
        nodes = [conv("enc.s2", "n1", 2 * c, c, 1), R("Relu", ["n1"], ["neck.out"])]
    elif name == "cls":
        nodes = [R("GlobalAveragePool", ["enc.s2"], ["gap"]), R("Flatten", ["gap"], ["flat"]),
                 R("Gemm", ["flat", weight("fc.w", 5, 2 * c), weight("fc.b", 5)], ["cls"], transB=1)]
    elif name == "seg":
        sizes = numpy_helper.from_array(np.array(shapes["enc.s1"], np.int64), "up.sizes")
        inits.append(sizes)
        nodes = [conv("enc.s1", "a", c, 4, 1),
                 R("Resize", ["neck.out", "", "", "up.sizes"], ["up"], mode="linear",
                   coordinate_transformation_mode="half_pixel"),
                 conv("up", "b", c, 4, 1), R("Add", ["a", "b"], ["seg"])]
    elif name == "depth":
        nodes = [conv("enc.s1", "depth", c, 1, 3)]
    elif name == "normals":
        nodes = [conv("neck.out", "normals", c, 3, 1)]
    else:
        raise KeyError(name)
    ins, outs = SEGMENTS[name]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shapes[n]))  # noqa: E731
    graph = helper.make_graph(nodes, name, [vi(n) for n in ins], [vi(n) for n in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="mtedge-toy")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _file_ref(root: Path, rel: str) -> dict:
    data = (root / rel).read_bytes()
    return {"file": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def reference_outputs(bundle: str | os.PathLike, x: np.ndarray, tasks: list[str] | None = None,
                      variant: str | None = None) -> dict[str, np.ndarray]:
    """A bundle's ONNX segments in onnxruntime, unoptimized, in the manifest's batch: the parity
    reference for any format-1 bundle (toy or exported). ``x`` is ``[N, ...input shape[1:]]``."""
    return ReferenceExecutor(Bundle.open(bundle), variant, optimize=False).run(x, tasks)


def make_toy_bundle(path: str | os.PathLike, *, seed: int = 0, samples: int = 3,
                    variants: tuple[str, ...] = ("fp32", "c50"), overwrite: bool = True) -> Path:
    """Writes the toy bundle to ``path`` (a ``NAME.mtb`` directory) and returns it.

    Deterministic for a given seed. Written atomically as the format requires: into
    ``path.tmp-<pid>/`` with manifest.json last, then renamed into place."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "golden").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    manifest_variants = {}
    for v in variants:
        c = WIDTHS[v]
        shapes = _shapes(c)
        (tmp / "segments" / v).mkdir(parents=True)
        segs = {}
        for s, (ins, outs) in SEGMENTS.items():
            rel = f"segments/{v}/{s}.onnx"
            onnx.save(_segment_model(s, c, rng), tmp / rel)
            spec = lambda n: {"name": n, "shape": list(shapes[n]), "dtype": "float32"}  # noqa: E731
            segs[s] = {**_file_ref(tmp, rel), "inputs": [spec(n) for n in ins],
                       "outputs": [spec(n) for n in outs]}
        manifest_variants[v] = {"precision": "fp32",
                                "config": None if v == "fp32" else {"width_mult": WIDTHS[v] / WIDTHS["fp32"]},
                                "segments": segs}
    seg_tasks = {s: [t for t, (_, ss) in TASKS.items() if s in ss] for s in SEGMENTS}
    manifest = {
        "format": "mtedge-bundle",
        "format_version": 1,
        "name": path.name.removesuffix(".mtb").replace("_", "-") or "toy",
        "input": {"name": "image", "shape": list(INPUT_SHAPE), "dtype": "float32", "layout": "NCHW",
                  "dynamic_batch": False, "normalization": {"scale": 1.0, "mean": [0.0] * 3, "std": [1.0] * 3}},
        "tasks": {t: {"kind": k, "metric": "max_abs_err", "higher_is_better": False, "allowed_drop": 0.0,
                      "output": t, "segments": ss} for t, (k, ss) in TASKS.items()},
        "segments": {s: {"inputs": ins, "outputs": outs, "tasks": seg_tasks[s], "shared": len(seg_tasks[s]) > 1}
                     for s, (ins, outs) in SEGMENTS.items()},
        "default_variant": variants[0],
        "variants": manifest_variants,
        "engines": {},
    }
    x = rng.standard_normal((samples, *INPUT_SHAPE[1:])).astype(np.float32)
    np.save(tmp / "golden" / "input.npy", x)
    model_hash = hashlib.sha256(b"".join((tmp / manifest_variants[variants[0]]["segments"][s]["file"]).read_bytes()
                                         for s in SEGMENTS)).hexdigest()
    manifest["golden"] = {"input": _file_ref(tmp, "golden/input.npy"), "outputs": {},  # outputs: below
                          "samples": samples, "source": f"standard normal, seed {seed}"}
    manifest["provenance"] = {"model": "toy:multitask", "model_sha256": model_hash, "recipe": None,
                              "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "tools": {"mtedge": "0.1.0", "onnx": onnx.__version__}}
    golden = ReferenceExecutor(Bundle(tmp, validate_manifest(manifest)), variants[0], check_files=False,
                               optimize=False).run(x)
    for t, arr in golden.items():
        np.save(tmp / "golden" / f"{t}.npy", arr.astype(np.float32))
    manifest["golden"]["outputs"] = {t: _file_ref(tmp, f"golden/{t}.npy") for t in TASKS}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True")
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path
