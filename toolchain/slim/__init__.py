"""Slimmable widths: one multitask network, compute budget and task preference chosen at run time.

    convert   toolchain.slim.convert   importance-ordered channel groups, masks, materialize
    train     toolchain.slim.train     sandwich rule, in-place + encoder (CI-KD) distillation, BN recalibration
    search    toolchain.slim.search    (encoder, decoder) grid table, budget + preferences -> configuration
    export    toolchain.slim.export    K configurations -> one bundle, identical segments stored once
    report    toolchain.slim.report    metric-vs-FLOPs plot, controllability, tables

A slimmable checkpoint is an ordinary mtedge checkpoint (``toolchain.model.save_checkpoint``) of a
:class:`SlimmableModel`: its plan stores the SlimSpec, configuration and per-width batch-norm
statistics (toolchain/checkpoint.py), and its ``slim`` entry holds the evaluated table.
See docs/slimmable.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from toolchain.errors import SpecError
from toolchain.slim.convert import convert, materialize
from toolchain.slimmable import DEFAULT_WIDTHS, SlimmableModel, WidthConfig, parse_config_name

__all__ = ["DEFAULT_WIDTHS", "SlimmableModel", "WidthConfig", "convert", "materialize", "parse_config_name",
           "load_slimmable", "save_slimmable", "make_slimmable"]


def make_slimmable(model: Any, recipe: Any, *, widths: Sequence[float] = DEFAULT_WIDTHS, round_to: int = 4,
                   encoder_stages: bool = False, epochs: float = 0.5, limit: int | None = None, lr: float = 1e-3,
                   random_configs: int = 1, teacher: bool = True, calib_images: int = 512, val_count: int = 1000,
                   latency: bool = True, taylor: bool = True, evaluator: Any = None) -> tuple[SlimmableModel, Any]:
    """A captured model made slimmable (`mtedge slim convert`): channels ordered by the pruner's
    task-aware score (``taylor``) or magnitude, sandwich-rule training with the original as teacher
    (``epochs`` 0: BN recalibration only), the width grid evaluated on val and, with ``latency``, the
    host latency model fitted. Returns (slimmable model, its SlimTable)."""
    from toolchain.data.loaders import batches, example_input
    from toolchain.prune.groups import channel_groups
    from toolchain.prune.importance import channel_scores, magnitude
    from toolchain.slim.search import evaluate_grid, fit_latency
    from toolchain.slim.train import SlimTrainConfig, recalibrate, train_slimmable

    example = example_input(recipe)
    groups = channel_groups(model, example)
    scores = (channel_scores(model, groups, recipe, list(batches(recipe, "val", count=256, batch_size=128))) if taylor
              else {g.name: magnitude(g) for g in groups})
    s = convert(model, list(recipe.tasks), example, scores=scores, widths=list(widths), round_to=round_to,
                encoder_stages=encoder_stages)
    if epochs > 0:
        train_slimmable(s, recipe, SlimTrainConfig(epochs=epochs, limit=limit, lr=lr, random_configs=random_configs,
                                                   calib_images=calib_images), teacher=model if teacher else None)
    else:
        recalibrate(s, recipe, images=calib_images)
    table = evaluate_grid(s, recipe, list(batches(recipe, "val", count=val_count, batch_size=500)), example,
                          evaluator=evaluator)
    if latency:
        fit_latency(table, s, example)
    return s, table


def save_slimmable(path: str | Path, slim: SlimmableModel, origin: str, recipe: Any, table: Any = None,
                   **meta: Any) -> None:
    """Write `slim` (with its batch-norm statistics and, if given, its evaluated table) atomically."""
    from toolchain.model import save_checkpoint

    save_checkpoint(path, slim, origin, recipe, slim={"table": table.to_dict() if table is not None else None, **meta})


def load_slimmable(spec: str, checkpoint: str | None = None, *,
                   trust_pickle: bool = False) -> tuple[SlimmableModel, Any, Any, dict[str, Any]]:
    """(slimmable model, recipe, SlimTable or None, meta) from a checkpoint written by ``mtedge slim convert``."""
    from toolchain.model import load
    from toolchain.slim.search import SlimTable

    loaded = load(spec, checkpoint, trust_pickle=trust_pickle)
    if not isinstance(loaded.module, SlimmableModel):
        raise SpecError(f"{spec} holds a {type(loaded.module).__name__}, not a slimmable model; "
                        f"make one with `mtedge slim convert {spec} -o slim.pt`")
    meta = dict(loaded.meta.get("slim") or {})
    table = SlimTable.from_dict(meta["table"]) if meta.get("table") else None
    return loaded.module.eval(), loaded.recipe, table, meta
