"""Resolve a user's ``package.module:name`` (model factories, recipe hooks, metrics, data sources)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from toolchain.errors import SpecError


def import_callable(spec: str, what: str, expected: str) -> Callable[..., Any]:
    """The callable `spec` names; errors say `what` it was for and what was `expected`."""
    mod_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise SpecError(f"cannot import {what} {spec!r} ({e}); expected {expected}") from None
    if not callable(fn):
        raise SpecError(f"{what} {spec!r} is a {type(fn).__name__}, not a callable; expected {expected}")
    return fn
