"""Calibration inputs for every segment, taken from the fp32 chain (docs/quantization.md).

The trunk is calibrated on the recipe's `calib` images; every other segment on the tensors the
fp32 chain feeds it for those same images (its real input distribution in the deployed chain).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from toolchain.bundle.executor import DatasetRunner, Samples, SegmentModel
from toolchain.quantize.data import SplitData


@dataclass
class Calibration:
    """Per-segment lists of feed dicts, and where they came from (written into the manifest)."""

    samples: dict[str, Samples]
    provenance: dict[str, Any]


def collect_calibration(runner: DatasetRunner, fp32: dict[str, SegmentModel], data: SplitData, source: str) -> Calibration:
    """Boundary tensors of the fp32 chain for every calibration image, grouped per segment."""
    return Calibration({seg: runner.segment_inputs(fp32, seg) for seg in runner.manifest.segments}, {
        "split": data.split, "samples": len(data), "source": source,
        "segment_inputs": "fp32 chain in onnxruntime (trunk: images; other segments: the fp32 boundary tensors)",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
