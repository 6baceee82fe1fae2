"""toolchain.model.load: every accepted spec, and clear errors for the rest."""

import pytest
import torch

from toolchain.errors import SpecError
from toolchain.model import load, save_checkpoint


def test_zoo_models_return_a_dict_of_tasks():
    m = load("zoo:fashion-mt")
    with torch.no_grad():
        out = m.module(torch.zeros(2, 1, 28, 28))
    assert set(out) == {"garment", "group", "silhouette", "denoise"}
    assert out["garment"].shape == (2, 10) and out["group"].shape == (2, 4)
    assert out["silhouette"].shape == (2, 2, 28, 28) and out["denoise"].shape == (2, 1, 28, 28)
    assert not m.module.training


def test_factory_spec_with_checkpoint_state_dict(tmp_path):
    ref = load("support.architectures:SingleLayerBranch").module
    torch.nn.init.constant_(ref.edge.weight, 0.5)
    ckpt = tmp_path / "w.pt"
    torch.save(ref.state_dict(), ckpt)
    m = load("support.architectures:SingleLayerBranch", checkpoint=ckpt)
    assert torch.equal(m.module.edge.weight, ref.edge.weight)
    assert m.sha256 == load("support.architectures:SingleLayerBranch", checkpoint=ckpt).sha256


def test_pickled_module_and_mtedge_checkpoint(tmp_path, fashion_recipe):
    module = load("zoo:fashion-mt").module
    torch.save(module, tmp_path / "whole.pt")
    with pytest.raises(SpecError, match="runs code stored in the file.*--trust-pickle"):
        load(str(tmp_path / "whole.pt"))
    whole = load(str(tmp_path / "whole.pt"), trust_pickle=True)
    assert type(whole.module).__name__ == "FashionMT"
    save_checkpoint(tmp_path / "c.pt", module, "zoo:fashion-mt", fashion_recipe, metrics={"garment": 1.0})
    c = load(str(tmp_path / "c.pt"))
    assert c.origin == "zoo:fashion-mt" and c.recipe.tasks == fashion_recipe.tasks
    assert c.meta["metrics"] == {"garment": 1.0}
    assert c.sha256 == whole.sha256


def test_bare_state_dict_file_explains_how_to_load_it(tmp_path):
    torch.save(load("zoo:fashion-mt").module.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(SpecError, match="package.module:factory --checkpoint"):
        load(str(tmp_path / "sd.pt"))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("zoo:resnet-mt", "unknown zoo model 'resnet-mt'; known: zoo:fashion-mt, zoo:mobilenetv2-mt"),
        ("no_such_pkg.mod:make", "cannot import factory"),
        ("toolchain.zoo:ZOO", "is a dict, not a callable"),
        ("toolchain.zoo:RECIPES", "is a PosixPath, not a callable"),
        ("model.pt", "not zoo:NAME, package.module:factory, or an existing file"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(SpecError, match=message):
        load(spec)


def test_checkpoint_that_does_not_fit(tmp_path):
    torch.save({"state_dict": {"enc.0.0.weight": torch.zeros(1)}}, tmp_path / "x.pt")
    with pytest.raises(SpecError, match="does not fit the model"):
        load("support.architectures:SingleLayerBranch", checkpoint=tmp_path / "x.pt")
    with pytest.raises(SpecError, match="checkpoint file .* not found"):
        load("zoo:fashion-mt", checkpoint=tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(SpecError, match="cannot read .*garbage.pt as a torch file"):
        load(str(tmp_path / "garbage.pt"))
