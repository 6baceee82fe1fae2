"""One FLOPs convention (toolchain/flops.py): inspect/partition (graph.cost on the captured graph)
and pruning (prune.cost's layer hooks) count what torch.utils.flop_counter counts, on every test
architecture and zoo model."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import patterns
from toolchain import zoo
from toolchain.graph.capture import multitask
from toolchain.graph.cost import node_flops
from toolchain.graph.tracing import trace
from toolchain.prune import cost
from toolchain.recipe import load_recipe, parse_recipe
from support import layout_models
from support.architectures import EXPORT_SHAPES, recipe_for
from support.encoders import ENCODERS


def _cases() -> dict:
    cases = {f"pattern:{n}": (lambda n=n: (patterns.PATTERNS[n][0](), parse_recipe(patterns.recipe_doc(n))))
             for n in patterns.PATTERNS}
    for name, cls in {**EXPORT_SHAPES, **ENCODERS}.items():
        cases[f"arch:{name}"] = lambda cls=cls: (lambda m: (m, recipe_for(m)))(cls())
    for name, cls in layout_models.LAYOUT_MODELS.items():
        cases[f"layout:{name}"] = lambda cls=cls: (cls(), recipe_for(cls(), (1, *cls.input_shape[1:])))
    for name, entry in zoo.ZOO.items():
        cases[f"zoo:{name}"] = lambda e=entry: (e.factory(), load_recipe(e.recipe_path))
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_count_is_torch_flop_counter(case):
    model, recipe = CASES[case]()
    model.eval()
    x = torch.randn(recipe.input.shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    expected = counter.get_total_flops()
    assert expected > 0
    traced = trace(multitask(model, recipe), x)
    assert sum(node_flops(traced.gm, n) for n in traced.gm.graph.nodes) == expected
    assert cost.model_flops(model, x) == expected
