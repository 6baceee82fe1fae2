"""`mtedge profile` and latency tables: OpenVINO measurement here, roofline estimates for Jetson targets."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from doubles.fixtures import _toy_master, toy_bundle  # noqa: F401 (fixtures)
from toolchain.bundle import Bundle
from toolchain.cli import main
from toolchain.errors import SpecError
from toolchain.targets.latency import (LatencyTable, estimate_layer_ms, load_table, node_costs, profile_bundle)
from toolchain.targets.profile import load_profile


def test_node_costs_from_shapes() -> None:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "m"], ["y"], name="mm"),
             helper.make_node("Add", ["y", "y"], ["z"], name="add")]
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2, 3, 3], [0.0] * 72)
    bias = helper.make_tensor("b", TensorProto.FLOAT, [4], [0.0] * 4)
    m = helper.make_tensor("m", TensorProto.FLOAT, [4 * 5 * 5, 7], [0.0] * 700)
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 7])], [w, bias, m])
    costs = {c.name: c for c in node_costs(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))}
    assert costs["conv"].flops == 2 * (4 * 25) * (2 * 9) + 4 * 25
    assert costs["conv"].bytes == 4 * (50 + 72 + 4 + 100)
    assert costs["relu"].fused and costs["flat"].flops == 0 and costs["flat"].bytes == 0
    assert costs["mm"].flops == 2 * 7 * 100 and costs["add"].flops == 7 and not costs["add"].fused


def test_roofline_compute_and_memory_bound() -> None:
    from toolchain.targets.latency import NodeCost

    nano = load_profile("jetson-orin-nano-8gb")
    agx = load_profile("jetson-agx-orin-64gb")
    big = NodeCost("conv", "Conv", flops=10**10, bytes=10**6)
    wide = NodeCost("add", "Add", flops=10**6, bytes=10**9)
    assert estimate_layer_ms(nano, big, "fp16") > estimate_layer_ms(agx, big, "fp16")
    assert estimate_layer_ms(nano, big, "fp32") > estimate_layer_ms(nano, big, "fp16")
    # memory bound: time follows bandwidth (68 vs 204.8 GB/s)
    ratio = estimate_layer_ms(nano, wide, "fp32") / estimate_layer_ms(agx, wide, "fp32")
    assert ratio == pytest.approx(204.8 / 68, rel=0.01)
    assert estimate_layer_ms(nano, NodeCost("q", "QuantizeLinear", 10, 10, fused=True), "int8") == 0.0


def test_measured_table_host_cpu(toy_bundle: Path, tmp_path: Path) -> None:
    opened = Bundle.open(toy_bundle)
    root, m = opened.root, opened.manifest
    table = profile_bundle(root, m, load_profile("host-cpu"), "fp32", runs=5)
    assert table.source == "measured" and set(table.segments) == {"trunk", "seg", "cls"}
    assert all(v > 0 for v in table.segments.values())
    assert table.layers["/trunk/conv1/Conv"] > 0 and table.layers["/cls/fc/Gemm"] > 0
    assert table.layer_info["/trunk/conv1/Conv"]["op"] == "Conv"
    back = load_table(table.save(tmp_path / "t.json"))
    assert back.segments == table.segments and back.layers == table.layers and back.meta["runs"] == 5


@pytest.mark.parametrize("target", ["jetson-orin-nano-8gb", "jetson-agx-xavier"])
def test_estimate_for_jetson(toy_bundle: Path, target: str) -> None:
    opened = Bundle.open(toy_bundle)
    root, m = opened.root, opened.manifest
    table = profile_bundle(root, m, load_profile(target), "int8")
    assert table.source == "estimate" and table.meta["method"] == "roofline"
    assert table.segments["trunk"] == pytest.approx(sum(v for k, v in table.layers.items()
                                                        if table.layer_info[k]["segment"] == "trunk"))
    assert table.layers["/trunk/conv1/Conv/q0/QuantizeLinear"] == 0.0  # fused into the int8 conv
    assert table.layers["/trunk/conv1/Conv"] > 0


def test_layer_cost_for_the_pruner(tmp_path: Path) -> None:
    t = LatencyTable("x", "measured", {"s": 1.0}, {"a": 0.2, "b": 0.6},
                     {"a": {"segment": "s", "op": "Conv", "flops": 100, "bytes": 1},
                      "b": {"segment": "s", "op": "Conv", "flops": 300, "bytes": 1}})
    cost = t.cost_fn()
    assert cost("a") == 0.2 and cost("zzz") == 0.0
    assert t.layer_cost("pruned", op="Conv", flops=200) == pytest.approx(0.4)  # 0.8 ms / 400 flops
    assert t.ops == {"Conv": pytest.approx(0.8)}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "mtedge-latency", "format_version": 1, "target": "x", "source": "guess",
                               "segments": {}, "layers": {}}))
    with pytest.raises(SpecError, match="field 'source' is 'guess'"):
        load_table(bad)
    bad.write_text("{}")
    with pytest.raises(SpecError, match="not an mtedge latency table"):
        load_table(bad)


def test_cli_profile(toy_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lat.json"
    assert main(["profile", str(toy_bundle), "--target", "host-cpu", "--runs", "3", "-o", str(out)]) == 0
    assert "measured" in capsys.readouterr().out
    d = json.loads(out.read_text())
    assert d["format"] == "mtedge-latency" and d["source"] == "measured" and d["target"] == "host-cpu"
    assert main(["profile", str(toy_bundle), "--target", "jetson-orin-nx-16gb", "--variant", "fp16",
                 "-o", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["source"] == "estimate" and d["variant"] == "fp16" and d["ops"]["Conv"] > 0
    assert main(["profile", str(toy_bundle), "--target", "host-cpu", "--variant", "nope"]) == 2
    assert "variant 'nope'" in capsys.readouterr().err
