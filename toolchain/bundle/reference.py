"""onnxruntime as the independent reference executor of a bundle (parity checks, verify)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from toolchain.bundle.manifest import Bundle


class ReferenceExecutor:
    """Chains a variant's segment files in onnxruntime, exactly as the manifest's DAG says."""

    def __init__(self, bundle: Bundle, variant: str | None = None, threads: int = 1, check_files: bool = True) -> None:
        """`check_files=False` when the caller has just verified every checksum (no second hashing)."""
        import onnxruntime as ort

        self.bundle = bundle
        self.variant_name = variant or bundle.manifest["default_variant"]
        self.check_files = check_files
        v = bundle.variant(self.variant_name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sessions = {
            name: ort.InferenceSession(str(bundle.path(seg, check=check_files)), opts, providers=["CPUExecutionProvider"])
            for name, seg in v["segments"].items()
        }

    def run(self, image: np.ndarray, tasks: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        m = self.bundle.manifest
        tasks = list(tasks) if tasks is not None else list(m["tasks"])
        values = {m["input"]["name"]: np.ascontiguousarray(image, dtype=np.float32)}
        for seg_name in self.bundle.segments_for(tasks):
            seg = m["segments"][seg_name]
            sess = self.sessions[seg_name]
            outs = sess.run(seg["outputs"], {t: values[t] for t in seg["inputs"]})
            values.update(zip(seg["outputs"], outs))
        return {t: values[m["tasks"][t]["output"]] for t in tasks}

    def run_golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Outputs for every golden sample (fed one at a time unless batch is dynamic) and the expected ones."""
        x, expected = self.bundle.golden(check=self.check_files)
        batch = self.bundle.manifest["input"]["shape"][0]
        got: dict[str, list[np.ndarray]] = {t: [] for t in expected}
        for i in range(0, len(x), batch):
            out = self.run(x[i : i + batch], tasks=list(expected))
            for t in expected:
                got[t].append(out[t])
        return {t: np.concatenate(v).astype(np.float32) for t, v in got.items()}, expected
