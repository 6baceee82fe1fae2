"""Checkpoints load without unpickling code (toolchain/checkpoint.py, docs/reliability.md)."""

from __future__ import annotations

import os

import pytest
import torch

from cli_helpers import mtedge
from toolchain.errors import SpecError
from toolchain.model import load, save_checkpoint
from toolchain.prune import cost
from toolchain.prune.baseline import l1_prune
from support.architectures import recipe_for
from support.encoders import ENCODERS


class _Payload:
    """A pickle that would create a file when unpickled: the attack weights_only loading stops."""

    marker = ""

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        oa, ob = a.eval()(x), b.eval()(x)
    return oa.keys() == ob.keys() and all(torch.allclose(oa[k], ob[k], atol=1e-6) for k in oa)


def test_checkpoint_is_plain_data_and_round_trips(tmp_path, fashion_recipe):
    m = load("zoo:fashion-mt")
    save_checkpoint(tmp_path / "c.pt", m.module, "zoo:fashion-mt", fashion_recipe, metrics={"garment": 0.5})
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # raises if anything in it is code
    assert raw["version"] == 2 and "model" not in raw and raw["plan"]["modules"]
    c = load(str(tmp_path / "c.pt"))
    assert c.sha256 == m.sha256 and c.origin == "zoo:fashion-mt" and c.meta["metrics"] == {"garment": 0.5}
    assert _same_outputs(c.module, m.module, torch.randn(2, 1, 28, 28))


@pytest.mark.parametrize("name", ["resnet", "mobilenetv3"])
def test_pruned_factory_model_rebuilds_from_its_plan(name, tmp_path):
    torch.manual_seed(0)
    model = ENCODERS[name]().eval()
    origin = f"support.encoders:{type(model).__name__}"
    recipe = recipe_for(model)
    x = torch.randn(recipe.input.shape)
    result = l1_prune(model, x, int(0.7 * cost.model_flops(model, x)), round_to=4, iterations=2)
    save_checkpoint(tmp_path / "p.pt", result.model, origin, recipe, pruning={"method": result.method})
    back = load(str(tmp_path / "p.pt"))
    assert cost.model_flops(back.module, x) == result.flops_after < result.flops_before
    assert _same_outputs(back.module, result.model, x)


def test_slimmable_checkpoint_keeps_spec_config_and_statistics(tmp_path, fashion_recipe):
    from toolchain.slim import load_slimmable, save_slimmable
    from toolchain.slim.convert import WidthConfig, convert

    tasks = list(fashion_recipe.tasks)
    x = torch.randn(2, 1, 28, 28)
    s = convert(load("zoo:fashion-mt").module, tasks, x[:1], widths=(1.0, 0.5), round_to=4)
    s.bn_stats = {"encoder@50": {}}
    s.set_config(WidthConfig.uniform(0.5, tasks), load_stats=False)
    save_slimmable(tmp_path / "s.pt", s, "zoo:fashion-mt", fashion_recipe)
    back, _, _, _ = load_slimmable(str(tmp_path / "s.pt"))
    assert back.config == s.config and back.spec == s.spec and back.bn_stats == s.bn_stats
    assert _same_outputs(back, s, x)


def test_plan_that_does_not_reproduce_the_model_is_an_error(tmp_path, fashion_recipe):
    m = load("zoo:fashion-mt")
    save_checkpoint(tmp_path / "c.pt", m.module, "zoo:fashion-mt", fashion_recipe)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    key = next(k for k, v in raw["state_dict"].items() if v.dtype.is_floating_point and v.dim() == 4)
    raw["probe"]["outputs"]["garment"] += 1.0  # as if the origin's code had changed since saving
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(SpecError, match="does not reproduce the saved output 'garment'"):
        load(str(tmp_path / "bad.pt"))
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    raw["state_dict"][key] = torch.zeros(3)
    torch.save(raw, tmp_path / "bad2.pt")
    with pytest.raises(SpecError, match="rebuilt from 'zoo:fashion-mt' and the checkpoint's plan cannot run"):
        load(str(tmp_path / "bad2.pt"))


def test_pickled_code_never_runs_without_trust(tmp_path):
    _Payload.marker = str(tmp_path / "pwned")
    torch.save({"state_dict": _Payload()}, tmp_path / "evil.pt")
    for spec, ckpt in [(str(tmp_path / "evil.pt"), None), ("zoo:fashion-mt", tmp_path / "evil.pt")]:
        with pytest.raises(SpecError, match="holds pickled Python objects.*--trust-pickle"):
            load(spec, ckpt)
    assert not (tmp_path / "pwned").exists()


def test_cli_refuses_a_pickled_module_unless_trusted(tmp_path):
    torch.save(load("zoo:fashion-mt").module, tmp_path / "whole.pt")
    recipe = str(load("zoo:fashion-mt").recipe.source)
    refused = mtedge("inspect", str(tmp_path / "whole.pt"), "--recipe", recipe, check=False)
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr and "runs code" in refused.stderr
    ok = mtedge("inspect", str(tmp_path / "whole.pt"), "--trust-pickle", "--recipe", recipe)
    assert "garment" in ok.stdout


def test_metadata_must_be_plain_data(tmp_path, fashion_recipe):
    with pytest.raises(SpecError, match="checkpoint field extra.fn is a function"):
        save_checkpoint(tmp_path / "c.pt", load("zoo:fashion-mt").module, "zoo:fashion-mt", fashion_recipe,
                        extra={"fn": lambda: 0})
    assert not (tmp_path / "c.pt").exists()
