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
from typing import Any

from toolchain.errors import SpecError
from toolchain.slim.convert import DEFAULT_WIDTHS, SlimmableModel, WidthConfig, convert, parse_config_name

__all__ = ["DEFAULT_WIDTHS", "SlimmableModel", "WidthConfig", "convert", "parse_config_name", "load_slimmable",
           "save_slimmable"]


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
