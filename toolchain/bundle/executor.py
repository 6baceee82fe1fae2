"""The one executor of a bundle's segment DAG; the backend that runs each segment is injected.

A *runner* runs one segment: ``{input name: array} -> {output name: array}``. Backends make runners: onnxruntime
over a variant's files or in-memory models (the independent reference), OpenVINO (quantization latency, CPU
engines in ``targets.openvino_builder``), TensorRT engines (``targets.build``). The C++ runtime walks the same
DAG itself (runtime/csrc/core/runtime.cpp).

The walk: segments in manifest order (which is topological), only those the tasks need; each segment's inputs
are cast to the dtype the variant declares (fp16 variants pass float16 between segments), task outputs come back
as float32, samples go through in the manifest's batch.

:class:`DatasetRunner` walks the same DAG for quantization: a whole data set through in-memory segment models
(many near-identical chains: fp32, int8, int8 with one layer kept in float...), each segment's outputs cached by
the identity of its model *and of every model upstream of it*, so trying another head never re-runs the trunk.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from toolchain.bundle.manifest import Bundle, Manifest
from toolchain.errors import BundleError

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Samples = list[dict[str, np.ndarray]]


def run_dag(manifest: Manifest, variant: str, runners: Mapping[str, Runner], x: np.ndarray,
            tasks: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """One batch through the segments ``tasks`` need; returns every tensor by name."""
    env: dict[str, np.ndarray] = {manifest.input.name: np.ascontiguousarray(x, dtype=np.float32)}
    vsegs = manifest.variant(variant).segments
    for seg in manifest.segments_for(tasks):
        spec = vsegs[seg]
        outs = runners[seg]({t.name: np.ascontiguousarray(env[t.name], dtype=t.dtype) for t in spec.inputs})
        for t in spec.outputs:
            if t.name not in outs:
                raise BundleError(f"segment {seg!r} of variant {variant!r} produced no tensor {t.name!r}; "
                                  f"it produced {', '.join(outs)}")
            env[t.name] = np.asarray(outs[t.name])
    return env


def run_tasks(manifest: Manifest, variant: str, runners: Mapping[str, Runner], x: np.ndarray,
              tasks: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Task outputs (float32) for every sample of ``x`` ([N, ...]), fed in the manifest's batch."""
    tasks = list(manifest.tasks) if tasks is None else list(tasks)
    batch = manifest.input.batch
    got: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for i in range(0, len(x), batch):
        env = run_dag(manifest, variant, runners, x[i:i + batch], tasks)
        for t in tasks:
            got[t].append(env[manifest.tasks[t].output].astype(np.float32))
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
    return {s: session_runner(ort_session(str(bundle.path(v.segments[s], check=check_files)), threads, optimize))
            for s in bundle.segments_for(tasks)}


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
        self.variant_name = variant or bundle.manifest.default_variant
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


# --- a whole data set through in-memory segment models (quantization) ----------------------------

@dataclass(frozen=True)
class SegmentModel:
    """One segment's ONNX model and a key that identifies its content (e.g. 'int8|/stem.0/Conv')."""

    model: Any = field(compare=False, hash=False)  # onnx.ModelProto
    key: str


def producers(manifest: Manifest) -> dict[str, str]:
    """Tensor name -> the segment that writes it (the model input has none)."""
    return {t: s for s, seg in manifest.segments.items() for t in seg.outputs}


def upstream(manifest: Manifest, segment: str) -> list[str]:
    """`segment` and every segment it depends on, in manifest (topological) order."""
    producer = producers(manifest)
    needed, stack = set(), [segment]
    while stack:
        s = stack.pop()
        if s not in needed:
            needed.add(s)
            stack += [producer[t] for t in manifest.segments[s].inputs if t in producer]
    return [s for s in manifest.segments if s in needed]


class DatasetRunner:
    """Runs segment models over a fixed list of inputs in the manifest's batch, segment by segment,
    each segment's outputs for every sample cached (least recently used out past `cache_bytes`)."""

    def __init__(self, manifest: Manifest, images: np.ndarray, threads: int = 1, cache_bytes: int = 1 << 30) -> None:
        self.manifest = manifest
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.threads = threads
        self.batch = manifest.input.batch
        self.producer = producers(manifest)
        if len(self.images) % self.batch:
            raise ValueError(f"{len(self.images)} samples do not fill batches of {self.batch}")
        self._cache: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
        self._cache_bytes = cache_bytes

    def __getstate__(self) -> dict:
        # shipped to a worker without its cache: that rebuilds from the images on first use
        return {**self.__dict__, "_cache": OrderedDict()}

    def tensors(self, models: dict[str, SegmentModel], segment: str) -> dict[str, np.ndarray]:
        """Every output tensor of `segment`, stacked over all samples ([N, ...])."""
        key = tuple((s, models[s].key) for s in upstream(self.manifest, segment))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        feeds = self._inputs(models, segment)
        run = session_runner(ort_session(models[segment].model, self.threads))
        outs = [run({t: v[i:i + self.batch] for t, v in feeds.items()}) for i in range(0, len(self.images), self.batch)]
        # float16 boundaries stay float16
        result = {t: np.concatenate([np.asarray(o[t]) for o in outs]) for t in self.manifest.segments[segment].outputs}
        self._cache[key] = result
        while len(self._cache) > 1 and sum(a.nbytes for v in self._cache.values() for a in v.values()) > self._cache_bytes:
            self._cache.popitem(last=False)
        return result

    def _inputs(self, models: dict[str, SegmentModel], segment: str) -> dict[str, np.ndarray]:
        """`segment`'s input tensors for every sample: the images, or what upstream segments produce."""
        return {t: self.images if t == self.manifest.input.name else self.tensors(models, self.producer[t])[t]
                for t in self.manifest.segments[segment].inputs}

    def task_outputs(self, models: dict[str, SegmentModel], tasks: Iterable[str]) -> dict[str, np.ndarray]:
        """Output of each task for every sample."""
        outputs = {t: self.manifest.tasks[t].output for t in tasks}
        return {t: self.tensors(models, self.producer[o])[o] for t, o in outputs.items()}

    def segment_inputs(self, models: dict[str, SegmentModel], segment: str) -> Samples:
        """Per-sample feed dicts of `segment` (its input tensors as the upstream chain produces them)."""
        cols = self._inputs(models, segment)
        return [{t: np.ascontiguousarray(v[i : i + self.batch]) for t, v in cols.items()}
                for i in range(0, len(self.images), self.batch)]
