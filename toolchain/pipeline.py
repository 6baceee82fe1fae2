"""The pipeline `mtedge compress`, `mtedge sweep` and `mtedge demo` run: compress -> recover -> export -> quantize.

Each stage is a function of its own (``compress_stage``, ``export_stage``, ``quantize_stage``) so a
caller that caches stages (the sweep, one cached unit a stage) runs them one at a time;
:func:`run_pipeline` composes them. The rule between stages: a compressed model past a task's bound
that the caller did not allow (``CompressResult.ok`` False) is not exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from toolchain.compression import CompressResult
from toolchain.recipe import Recipe


@dataclass(frozen=True)
class PipelineConfig:
    prune: Mapping[str, Any] | None = None  # keyword arguments of toolchain.compress; None: no pruning
    bundle: Path | None = None  # export the (pruned) model here; None: no bundle
    precisions: tuple[str, ...] = ()  # variants quantize adds to the bundle ("int8", "fp16")
    label_free: bool = False  # without pruning: judge quantization by fidelity (pruning decides it otherwise)
    quantize_options: Any = None  # toolchain.quantize.QuantizeOptions; None: its defaults


@dataclass
class Quantized:
    """What the quantize stage wrote, against what was asked of it."""

    report: Any  # toolchain.quantize.report.QuantizeReport
    requested: tuple[str, ...]

    @property
    def missing(self) -> list[str]:
        """Requested variants that were not written (tasks out of bounds; the report's notes say why)."""
        return [v for v in self.requested if not self.report.written(v)]

    @property
    def ok(self) -> bool:
        return not self.missing and self.report.ok


@dataclass
class PipelineResult:
    model: nn.Module  # the model exported: the compressed one, else the one given
    recipe: Recipe
    compressed: CompressResult | None = None  # None without pruning
    bundle: Path | None = None  # None when not asked for, or when the compressed model is past its bounds
    quantized: Quantized | None = None


def compress_stage(model: str | nn.Module, recipe: Recipe | None, settings: Mapping[str, Any]) -> CompressResult:
    """Prune and recover (toolchain.compression.compress with ``settings`` as its keywords)."""
    from toolchain.compression import compress

    return compress(model, recipe, **settings)


def export_stage(model: nn.Module, recipe: Recipe, bundle: str | Path) -> Path:
    """The fp32 bundle of ``model`` at ``bundle`` (replaced when it exists)."""
    from toolchain.export import export_bundle

    export_bundle(model, recipe, bundle, force=True)
    return Path(bundle)


def quantize_stage(bundle: str | Path, recipe: Recipe, precisions: Sequence[str], label_free: bool | None = None,
                   options: Any = None) -> Quantized:
    """Add ``precisions`` to the bundle; ``label_free`` None: label-free exactly when the data has no labels."""
    from toolchain.quantize import quantize_bundle

    report = quantize_bundle(Path(bundle), recipe, precisions=list(precisions), label_free=label_free, options=options)
    return Quantized(report, tuple(precisions))


def run_pipeline(model: str | nn.Module, recipe: Recipe | None, config: PipelineConfig) -> PipelineResult:
    """Run the stages ``config`` asks for. ``model``: a module (with ``recipe``), or a spec when pruning."""
    if config.prune is None and not isinstance(model, nn.Module):
        raise TypeError(f"without pruning the pipeline needs a module, got {type(model).__name__}")
    if config.precisions and config.bundle is None:
        raise ValueError("quantizing needs a bundle to write: PipelineConfig(bundle=...)")
    compressed = compress_stage(model, recipe, config.prune) if config.prune is not None else None
    result = PipelineResult(compressed.model if compressed else model.eval(),
                            compressed.recipe if compressed else recipe, compressed)
    label_free = compressed.label_free if compressed else config.label_free
    if config.bundle is None:
        return result
    if compressed is not None and not compressed.ok:
        return result
    result.bundle = export_stage(result.model, result.recipe, config.bundle)
    if config.precisions:
        result.quantized = quantize_stage(result.bundle, result.recipe, config.precisions, label_free or None,
                                          config.quantize_options)
    return result


__all__ = ["PipelineConfig", "PipelineResult", "Quantized", "compress_stage", "export_stage", "quantize_stage",
           "run_pipeline"]
