"""The one executor of a bundle's segment DAG; the backend that runs each segment is injected.

A *runner* runs one segment: ``{input name: array} -> {output name: array}``. Backends make runners:
onnxruntime over a variant's files or in-memory models (the independent reference), OpenVINO
(quantization latency, CPU engines in ``targets.openvino_builder``), TensorRT engines
(``targets.build``). The C++ runtime walks the same DAG itself (`Runtime::run` in core/runtime.cpp).

The walk: segments in manifest order (which is topological), only those the tasks need;
each segment's inputs are cast to the dtype the variant declares (fp16 variants pass float16
between segments), task outputs come back as float32, samples go through in the manifest's batch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

from toolchain.bundle.manifest import Bundle, segments_for
from toolchain.errors import BundleError

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_dag(manifest: dict[str, Any], variant: str, runners: Mapping[str, Runner], x: np.ndarray,
            tasks: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """One batch through the segments ``tasks`` need; returns every tensor by name."""
    env: dict[str, np.ndarray] = {manifest["input"]["name"]: np.ascontiguousarray(x, dtype=np.float32)}
    vsegs = manifest["variants"][variant]["segments"]
    for seg in segments_for(manifest, tasks):
        spec = vsegs[seg]
        feeds = {t["name"]: np.ascontiguousarray(env[t["name"]], dtype=t["dtype"]) for t in spec["inputs"]}
        outs = runners[seg](feeds)
        for t in spec["outputs"]:
            if t["name"] not in outs:
                raise BundleError(f"segment {seg!r} of variant {variant!r} produced no tensor {t['name']!r}; "
                                  f"it produced {', '.join(outs)}")
            env[t["name"]] = np.asarray(outs[t["name"]])
    return env


def run_tasks(manifest: dict[str, Any], variant: str, runners: Mapping[str, Runner], x: np.ndarray,
              tasks: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Task outputs (float32) for every sample of ``x`` ([N, ...]), fed in the manifest's batch."""
    tasks = list(manifest["tasks"]) if tasks is None else list(tasks)
    batch = manifest["input"]["shape"][0]
    got: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for i in range(0, len(x), batch):
        env = run_dag(manifest, variant, runners, x[i:i + batch], tasks)
        for t in tasks:
            got[t].append(env[manifest["tasks"][t]["output"]].astype(np.float32))
    return {t: np.concatenate(v) for t, v in got.items()}


# --- backends ------------------------------------------------------------------------------------

def ort_session(model: Any, threads: int = 1, optimize: bool = True) -> Any:
    """An onnxruntime CPU session over a file path, serialized bytes or an in-memory ModelProto."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not optimize:  # the reference as written, no fusions
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def session_runner(sess: Any) -> Runner:
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(names, feeds)))


def onnxruntime_runners(bundle: Bundle, variant: str | None = None, *, threads: int = 1, optimize: bool = True,
                        check_files: bool = True, tasks: Iterable[str] | None = None) -> dict[str, Runner]:
    """Runners over a variant's ONNX files (``check_files=False`` right after the checksums were verified)."""
    v = bundle.variant(variant)
    return {s: session_runner(ort_session(str(bundle.path(v["segments"][s], check=check_files)), threads, optimize))
            for s in segments_for(bundle.manifest, tasks)}


def openvino_runners(bundle: Bundle, variant: str, config: dict[str, Any], core: Any = None) -> dict[str, Runner]:
    """Runners over a variant's ONNX files compiled on OpenVINO's CPU plugin with ``config``."""
    import openvino as ov

    core = core or ov.Core()
    runners = {}
    for name, seg in bundle.variant(variant)["segments"].items():
        compiled = core.compile_model(str(bundle.path(seg)), "CPU", config)
        runners[name] = request_runner(compiled)
    return runners


def request_runner(compiled: Any) -> Runner:
    """A runner over an OpenVINO compiled model (one infer request, outputs by tensor name)."""
    req, ports = compiled.create_infer_request(), compiled.outputs
    names = [p.get_any_name() for p in ports]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = req.infer(feeds)
        return {n: res[p] for n, p in zip(names, ports)}
    return run


class ReferenceExecutor:
    """onnxruntime over a variant's files: the independent reference for export and verify."""

    def __init__(self, bundle: Bundle, variant: str | None = None, threads: int = 1, check_files: bool = True,
                 optimize: bool = True) -> None:
        self.bundle = bundle
        self.variant_name = variant or bundle.manifest["default_variant"]
        self.check_files = check_files
        self.runners = onnxruntime_runners(bundle, self.variant_name, threads=threads, optimize=optimize,
                                           check_files=check_files)

    def run(self, x: np.ndarray, tasks: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Task outputs (float32) for every sample of ``x``."""
        return run_tasks(self.bundle.manifest, self.variant_name, self.runners, x, tasks)

    def run_golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Outputs for every golden sample and the expected ones."""
        x, expected = self.bundle.golden(check=self.check_files)
        return self.run(x, list(expected)), expected
