"""One line per task output for a person at a terminal (`mtedge run`): a classifier's top classes
(softmax of its logits), a segmentation's largest classes by pixel share, else the value range."""

from __future__ import annotations

import numpy as np


def summarize_output(kind: str, out: np.ndarray) -> str:
    if kind == "classification":
        logits = out.reshape(-1)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:3]
        return "top: " + ", ".join(f"class {i} ({p[i]:.2f})" for i in top)
    if kind == "segmentation" and out.ndim == 4:
        labels, counts = np.unique(out[0].argmax(0), return_counts=True)
        order = np.argsort(-counts)[:3]
        return "pixels: " + ", ".join(f"class {labels[i]} {100 * counts[i] / counts.sum():.0f}%" for i in order)
    return f"min {out.min():.4g}  mean {out.mean():.4g}  max {out.max():.4g}"
