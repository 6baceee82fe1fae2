"""The pipeline `mtedge compress`, `mtedge sweep` and `mtedge demo` run: compress -> recover -> export -> quantize.

Each stage is a function of its own, so that the sweep can cache them one unit a stage;
:func:`run_pipeline` composes them. A compressed model past a task's bound that the caller did
not allow (``CompressResult.ok`` False) is not exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from toolchain.compression import CompressResult, compress
from toolchain.recipe import Recipe


@dataclass(frozen=True)
class PipelineConfig:
    prune: Mapping[str, Any] | None = None  # keyword arguments of toolchain.compress; None: no pruning
    bundle: Path | None = None  # export the (pruned) model here; None: no bundle
    precisions: tuple[str, ...] = ()  # variants quantize adds to the bundle ("int8", "fp16")
    label_free: bool = False  # without pruning: quantize judged by fidelity (pruning decides it otherwise)
    quantize_options: Any = None  # toolchain.quantize.QuantizeOptions; None: its defaults


@dataclass
class Quantized:
    report: Any  # toolchain.quantize.report.QuantizeReport
    requested: tuple[str, ...]

    @property
    def missing(self) -> list[str]:
        """Requested variants not written (tasks out of bounds: the report's notes say which)."""
        return [v for v in self.requested if not self.report.written(v)]

    @property
    def ok(self) -> bool:
        return not self.missing and self.report.ok


@dataclass
class PipelineResult:
    model: nn.Module  # the compressed model, else the one given
    compressed: CompressResult | None = None  # None without pruning
    bundle: Path | None = None  # None when not asked for, or when the compressed model is past its bounds
    quantized: Quantized | None = None


def compress_stage(model: str | nn.Module, recipe: Recipe | None, settings: Mapping[str, Any]) -> CompressResult:
    return compress(model, recipe, **settings)


def export_stage(model: nn.Module, recipe: Recipe, bundle: str | Path) -> Path:
    from toolchain.export import export_bundle

    export_bundle(model, recipe, bundle, force=True)
    return Path(bundle)


def quantize_stage(bundle: Path, recipe: Recipe, precisions: Sequence[str], label_free: bool | None = None,
                   options: Any = None) -> Quantized:
    """``label_free`` None: label-free exactly when the data has no labels."""
    from toolchain.quantize import quantize_bundle

    report = quantize_bundle(bundle, recipe, precisions=list(precisions), label_free=label_free, options=options)
    return Quantized(report, tuple(precisions))


def run_pipeline(model: str | nn.Module, recipe: Recipe | None, config: PipelineConfig) -> PipelineResult:
    """The stages ``config`` asks for. ``model``: a module with its recipe, or a spec when pruning."""
    compressed = compress_stage(model, recipe, config.prune) if config.prune is not None else None
    result = PipelineResult(compressed.model if compressed else model.eval(), compressed)
    if config.bundle is None or (compressed is not None and not compressed.ok):
        return result
    recipe = compressed.recipe if compressed else recipe
    result.bundle = export_stage(result.model, recipe, config.bundle)
    if config.precisions:
        label_free = compressed.label_free if compressed else config.label_free
        result.quantized = quantize_stage(result.bundle, recipe, config.precisions, label_free or None,
                                          config.quantize_options)
    return result
