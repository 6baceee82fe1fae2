from pathlib import Path

import pytest

from toolchain import zoo
from toolchain.errors import SpecError
from toolchain.recipe import RecoverySpec, load_recipe, parse_recipe


def base():
    return {"name": "r", "input": {"shape": [1, 3, 32, 32]}, "data": {"kind": "random"},
            "tasks": {"seg": {"kind": "segmentation", "metric": "miou", "allowed_drop": 1.0}}}


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_recipes_parse_and_round_trip(name):
    r = load_recipe(zoo.get(name).recipe_path)
    assert r.tasks and r.input.shape[0] == 1
    assert parse_recipe(r.to_dict()) == parse_recipe(r.to_dict())
    assert parse_recipe(r.to_dict()).tasks == r.tasks


def test_fashion_recipe_bounds_are_the_documented_ones():
    r = load_recipe(zoo.get("fashion-mt").recipe_path)
    assert {t: s.allowed_drop for t, s in r.tasks.items()} == {"garment": 1.0, "group": 1.0, "silhouette": 1.0, "denoise": 0.3}
    assert r.tasks["denoise"].metric == "psnr" and r.tasks["denoise"].higher_is_better
    # the pruning oracle may relax denoise's budget at most 8x (fine-tuning recovers PSNR poorly)
    assert {t: s.max_relax for t, s in r.tasks.items()} == {"garment": None, "group": None, "silhouette": None,
                                                            "denoise": 8.0}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("tasks"), "missing 'tasks'"),
        (lambda d: d["tasks"]["seg"].update(kind="segmentatoin"), "'tasks.seg.kind' is 'segmentatoin'; expected one of"),
        (lambda d: d["tasks"]["seg"].update(metric="iou"), "known metrics"),
        (lambda d: d["tasks"]["seg"].update(allowed_drop=-1), "must be >= 0"),
        (lambda d: d["tasks"]["seg"].pop("allowed_drop"), "missing 'tasks.seg.allowed_drop'"),
        (lambda d: d["tasks"]["seg"].update(max_relax=0.5), "'tasks.seg.max_relax' must be a number >= 1"),
        (lambda d: d["input"].update(shape=[3, 32, 32]), "4 positive ints"),
        (lambda d: d["data"].update(kind="imagenet"), "'data.kind' is 'imagenet'"),
        (lambda d: d.update(recovery={"reestimate_bn": "yes"}), "'recovery.reestimate_bn' must be true or false"),
        (lambda d: d.update(recovery={"feature_weight": -1}), "'recovery.feature_weight' must be >= 0"),
        (lambda d: d.update(recovery={"freeze_bn": "sometimes"}), "'recovery.freeze_bn' is 'sometimes'; expected auto"),
        (lambda d: d.update(recovery={"bn": True}), "'recovery' must be a mapping with keys reestimate_bn"),
    ],
)
def test_bad_recipes_name_the_field(mutate, message):
    doc = base()
    mutate(doc)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe(doc)


def test_recovery_section_parses_and_round_trips():
    doc = base()
    assert parse_recipe(doc).recovery == RecoverySpec()  # the section is optional
    doc["recovery"] = {"reestimate_bn": not RecoverySpec().reestimate_bn, "feature_weight": 2, "freeze_bn": True}
    r = parse_recipe(doc)
    assert r.recovery == RecoverySpec(not RecoverySpec().reestimate_bn, 2.0, "true")
    assert parse_recipe(r.to_dict()).recovery == r.recovery


def test_missing_and_invalid_recipe_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_recipe(bad)


def test_recipe_init_guesses_kinds_from_output_shapes_and_writes_a_recipe_that_parses(tmp_path):
    import sys

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from patterns import NamedTupleHeads, SequentialSlicing
    from toolchain.recipe_init import draft_recipe, guess_kind

    assert guess_kind("out0", [1, 10], [1, 3, 8, 8]) == "classification"
    assert guess_kind("bbox", [1, 4], [1, 3, 8, 8]) == "regression"
    assert guess_kind("landmarks", [1, 10], [1, 3, 8, 8]) == "keypoints"
    assert guess_kind("out1", [1, 5, 8, 8], [1, 3, 8, 8]) == "segmentation"
    assert guess_kind("out2", [1, 1, 8, 8], [1, 3, 8, 8]) == "depth"
    text = draft_recipe(SequentialSlicing(), "ss", [1, 3, 20, 24])
    doc = yaml.safe_load(text)
    assert doc["outputs"] == ["out0", "out1"] and doc["tasks"]["out0"]["kind"] == "classification"
    assert doc["tasks"]["out1"]["kind"] == "segmentation" and "CHECK" in text
    doc["data"] = {"kind": "random"}
    parse_recipe(doc)
    named = yaml.safe_load(draft_recipe(NamedTupleHeads(), "nt", [1, 3, 20, 24]))
    assert "outputs" not in named and named["tasks"]["box"]["kind"] == "regression"
    assert named["tasks"]["landmarks"]["kind"] == "keypoints"
    with pytest.raises(SpecError, match="--input-shape 1,C,H,W or --data DIR"):
        draft_recipe(SequentialSlicing(), "ss")
