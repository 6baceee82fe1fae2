"""Export several width configurations of a slimmable model into one bundle (docs/slimmable.md).

Each configuration is materialized as a dense model and exported with the ordinary
:func:`toolchain.export.export_bundle` (trace, partition, one ONNX per segment, onnxruntime parity against
torch) into a scratch directory; the results are merged into one bundle whose variants are the
configurations (``config: {"encoder": w, "decoders": {task: w}}``). A segment file whose sha256 another
configuration already produced is stored once, both variants pointing at it (the trunk is shared by every
configuration with the same encoder width; a decoder by every one with the same encoder and decoder widths).

Per variant (additive manifest fields, docs/bundle-format.md): ``flops`` (Conv/Linear FLOPs of the whole
configuration), ``latency_ms`` (median all-task ``Runtime.run`` of that variant, measured after loading
every configuration), ``metrics`` (per task, from the caller) and ``golden.outputs`` (that configuration's
own torch outputs on the bundle's golden input, which ``mtedge verify`` compares it with). The top-level
golden outputs are the default (widest) configuration's.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mtedge_runtime.manifest import FileRef, Variant, VariantGolden

from toolchain.bundle.files import file_ref, staged_directory, write_bytes_atomic
from toolchain.bundle.manifest import Bundle, Manifest
from toolchain.errors import SpecError
from toolchain.export import FP32_TOLERANCE, export_bundle
from toolchain.progress import progress_bar
from toolchain.prune.cost import model_flops
from toolchain.recipe import Recipe
from toolchain.slim.convert import SlimmableModel, WidthConfig, materialize


LatencyOf = Callable[[Path, Sequence[str], np.ndarray], Mapping[str, float]]


@dataclass
class SlimExportResult:
    path: Path
    variants: dict[str, dict[str, Any]]  # name -> {config, flops, latency_ms, metrics}
    files: int  # segment files stored
    segment_refs: int  # variant x segment entries (files + deduplicated references)
    max_abs_error: dict[str, dict[str, float]]  # variant -> task -> onnxruntime vs torch


def variant_metrics(slim: SlimmableModel, recipe: Recipe, configs: Sequence[WidthConfig], table: Any = None,
                    split: str = "val") -> dict[str, dict[str, float]] | None:
    """Task metrics per configuration for the manifest: ``val`` reads the slimmable table (None
    without one), ``test`` evaluates each configuration on the test split, ``none`` records none."""
    if split == "val":
        return {c.name: table.config_metrics(c) for c in configs} if table is not None else None
    if split != "test":
        return None
    from toolchain.data.loaders import batches
    from toolchain.evaluate import evaluate

    test = list(batches(recipe, "test", batch_size=500))
    metrics = {}
    for c in configs:
        slim.set_config(c)
        metrics[c.name] = evaluate(slim, recipe, test)
    return metrics


def export_slim_bundle(slim: SlimmableModel, recipe: Recipe, out: str | Path, configs: Sequence[WidthConfig],
                       example: torch.Tensor, metrics: Mapping[str, Mapping[str, float]] | None = None,
                       names: Sequence[str] | None = None, force: bool = False,
                       latency: LatencyOf | None = None, spec: str | None = None) -> SlimExportResult:
    """Write bundle `out` with one variant per configuration (the widest is ``default_variant``).

    `metrics`: variant name -> task -> metric (recorded as the variant's ``metrics``).
    `latency(bundle, variants, x)`: median ms per variant, recorded as ``latency_ms`` (the runtime
    measures it: ``toolchain.bench_runtime.measure_variant_latency``; the front end never loads it).
    Raises SpecError when two configurations share a name or their segment DAGs differ."""
    if not configs:
        raise SpecError("nothing to export: give at least one width configuration (e.g. --configs c100,c50)")
    names = list(names) if names else [c.name for c in configs]
    if len(set(names)) != len(names):
        raise SpecError(f"configuration names {names} repeat; give each configuration once")
    for c in configs:
        slim.check_config(c)
    out = Path(out)
    bundle_name = out.name.removesuffix(".mtb")
    dense = {n: materialize(slim, c, example) for n, c in zip(names, configs)}
    flops = {n: model_flops(m, example) for n, m in dense.items()}
    default = max(names, key=lambda n: flops[n])
    order = [default] + [n for n in names if n != default]
    errors: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mtedge-slim-") as scratch, staged_directory(out, overwrite=force) as tmp:
        parts: dict[str, Manifest] = {}
        with progress_bar(transient=True) as progress:
            job = progress.add_task("exporting width configurations", total=len(order))
            for n in order:
                res = export_bundle(dense[n], recipe, Path(scratch) / f"{n}.mtb", name=bundle_name, force=True)
                errors[n] = res.max_abs_error
                parts[n] = Bundle.open(Path(scratch) / f"{n}.mtb").manifest
                progress.update(job, advance=1, description=f"exported {n}")
        base = parts[default]
        manifest = copy.deepcopy(base)
        manifest.default_variant = default
        manifest.variants = {}
        if spec:
            manifest.provenance.model = spec
        manifest.provenance.extra["slimmable"] = {"widths": list(slim.spec.widths), "round_to": slim.spec.round_to}
        (tmp / "golden").mkdir()
        for rel in [base.golden.input.file, *[r.file for r in base.golden.outputs.values()]]:
            shutil.copyfile(Path(scratch) / f"{default}.mtb" / rel, tmp / rel)
        by_sha: dict[str, str] = {}  # segment file content -> where it is stored
        golden_input = np.load(tmp / base.golden.input.file)
        for n in order:
            m = parts[n]
            root = Path(scratch) / f"{n}.mtb"
            if list(m.segments) != list(base.segments) or any(
                    m.segments[s].inputs != base.segments[s].inputs
                    or m.segments[s].outputs != base.segments[s].outputs for s in base.segments):
                raise SpecError(f"configuration {n} partitions into a different segment DAG than {default} "
                                f"({list(m.segments)} vs {list(base.segments)}); a width must not remove a layer")
            if not np.array_equal(np.load(root / m.golden.input.file), golden_input):
                raise SpecError(f"configuration {n}: golden input differs from {default}'s (non-deterministic data?)")
            segs = {}
            for s, entry in m.variant("fp32").segments.items():
                e = segs[s] = copy.deepcopy(entry)
                if e.sha256 not in by_sha:
                    by_sha[e.sha256] = f"segments/{n}/{s}.onnx"
                    write_bytes_atomic(tmp / by_sha[e.sha256], (root / entry.file).read_bytes())
                e.file = by_sha[e.sha256]
            if n == default:
                golden_outs = copy.deepcopy(base.golden.outputs)
            else:
                golden_outs = {}
                for t, r in m.golden.outputs.items():
                    rel = f"golden/{n}/{t}.npy"
                    write_bytes_atomic(tmp / rel, (root / r.file).read_bytes())
                    golden_outs[t] = FileRef(**file_ref(tmp, tmp / rel))
            manifest.variants[n] = Variant(
                name=n, precision="fp32", config=configs[names.index(n)].to_dict(),
                tolerance={t: FP32_TOLERANCE for t in m.tasks}, segments=segs, flops=int(flops[n]),
                metrics={t: float(v) for t, v in metrics[n].items()} if metrics and n in metrics else None,
                golden=VariantGolden(golden_outs))
        manifest.variants = {n: manifest.variants[n] for n in names}  # the caller's order
        bundle = Bundle(tmp, manifest)
        bundle.save_manifest()
        if latency is not None:
            lat = latency(tmp, list(names), golden_input[:1])
            for n in names:
                bundle.manifest.variants[n].latency_ms = lat[n]
            bundle.save_manifest()
        manifest = bundle.manifest
    variants = {n: {k: getattr(manifest.variants[n], k) for k in ("config", "flops", "latency_ms", "metrics")} for n in names}
    refs = sum(len(manifest.variants[n].segments) for n in names)
    return SlimExportResult(out, variants, len(by_sha), refs, errors)
