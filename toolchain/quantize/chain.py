"""Run a bundle's segment DAG from in-memory ONNX models in onnxruntime, over a whole data set.

The quantizer needs many near-identical chains (fp32, int8, int8 with one more layer kept in
float, fp16...). A `ModelSet` names one ONNX model per segment; `ChainRunner.tensors` returns the
boundary tensors of a segment for every sample, caching them by the identity of the segment's
model *and of every segment upstream of it*, so trying another head never re-runs the trunk.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import onnx

from toolchain.bundle.executor import ort_session
from toolchain.bundle.manifest import Manifest, model

Samples = list[dict[str, np.ndarray]]


@dataclass(frozen=True)
class SegmentModel:
    """One segment's ONNX model and a key that identifies its content (e.g. 'int8|/stem.0/Conv')."""

    model: onnx.ModelProto = field(compare=False, hash=False)
    key: str


class BundleGraph:
    """The logical DAG of a manifest: segments in topological order, their tensors and tasks."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.input_name: str = manifest.input.name
        self.segments: dict[str, model.Segment] = manifest.segments
        self.order: list[str] = list(self.segments)
        self.producer = {t: s for s, seg in self.segments.items() for t in seg.outputs}

    def upstream(self, segment: str) -> list[str]:
        """`segment` and every segment it depends on, in topological order."""
        needed, stack = set(), [segment]
        while stack:
            s = stack.pop()
            if s in needed:
                continue
            needed.add(s)
            stack += [self.producer[t] for t in self.segments[s].inputs if t in self.producer]
        return [s for s in self.order if s in needed]

    def task_output(self, task: str) -> tuple[str, str]:
        """(segment, tensor) that produces `task`'s output."""
        out = self.manifest.tasks[task].output
        return self.producer[out], out

    def task_segments(self, task: str) -> list[str]:
        return list(self.manifest.tasks[task].segments)


class ChainRunner:
    """Runs segment models over a fixed list of input images, one sample at a time (static batch)."""

    def __init__(self, graph: BundleGraph, images: np.ndarray, threads: int = 1, cache_bytes: int = 1 << 30) -> None:
        self.graph = graph
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.threads = threads
        self.batch = graph.manifest.input.batch
        if len(self.images) % self.batch:
            raise ValueError(f"{len(self.images)} samples do not fill batches of {self.batch}")
        self._cache: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
        self._cache_bytes = cache_bytes

    def __getstate__(self) -> dict:
        # shipped to a worker without its cache: that rebuilds from the images on first use
        return {**self.__dict__, "_cache": OrderedDict()}

    def _key(self, models: dict[str, SegmentModel], segment: str) -> tuple:
        return tuple((s, models[s].key) for s in self.graph.upstream(segment))

    def tensors(self, models: dict[str, SegmentModel], segment: str) -> dict[str, np.ndarray]:
        """Every output tensor of `segment`, stacked over all samples ([N, ...])."""
        key = self._key(models, segment)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        seg = self.graph.segments[segment]
        feeds = self._inputs(models, segment)
        sess = ort_session(models[segment].model, self.threads)
        outs: dict[str, list[np.ndarray]] = {t: [] for t in seg.outputs}
        for i in range(0, len(self.images), self.batch):
            res = sess.run(seg.outputs, {t: v[i : i + self.batch] for t, v in feeds.items()})
            for t, r in zip(seg.outputs, res):
                outs[t].append(np.asarray(r))  # float16 boundaries stay float16
        result = {t: np.concatenate(v) for t, v in outs.items()}
        self._cache[key] = result
        while len(self._cache) > 1 and sum(a.nbytes for v in self._cache.values() for a in v.values()) > self._cache_bytes:
            self._cache.popitem(last=False)
        return result

    def _inputs(self, models: dict[str, SegmentModel], segment: str) -> dict[str, np.ndarray]:
        """`segment`'s input tensors for every sample: the images, or what upstream segments produce."""
        return {t: self.images if t == self.graph.input_name else self.tensors(models, self.graph.producer[t])[t]
                for t in self.graph.segments[segment].inputs}

    def task_outputs(self, models: dict[str, SegmentModel], tasks: Iterable[str]) -> dict[str, np.ndarray]:
        """Output of each task for every sample."""
        out = {}
        for t in tasks:
            seg, tensor = self.graph.task_output(t)
            out[t] = self.tensors(models, seg)[tensor]
        return out

    def segment_inputs(self, models: dict[str, SegmentModel], segment: str, count: int | None = None) -> Samples:
        """Per-sample feed dicts of `segment` (its input tensors as the upstream chain produces them)."""
        cols = self._inputs(models, segment)
        n = len(self.images) if count is None else min(count, len(self.images))
        return [{t: np.ascontiguousarray(v[i : i + self.batch]) for t, v in cols.items()} for i in range(0, n, self.batch)]
