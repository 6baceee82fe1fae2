"""Dependencies point one way (docs/architecture.md, "Layers"). Every import of every module of the
installed package is checked: function-local ones, `importlib.import_module("toolchain.x")` and the
module names a lazy loader keeps in a table (cli.py's commands, the package root's API) included."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import toolchain

PKG = Path(toolchain.__file__).parent
ROOTS = ("toolchain", "mtedge_runtime")

# bottom to top; a module may import its own layer and those listed for it
MAY_IMPORT = {
    "device": {"device"},  # mtedge_runtime: the runtime's own package, never imports toolchain
    "base": {"device", "base"},
    "graph": {"device", "base", "graph"},
    "bundle format": {"device", "base", "bundle format"},
    # graph and runtime are siblings: they meet in the bundle format
    "runtime": {"device", "base", "bundle format", "runtime"},
    "model and data": {"device", "base", "graph", "bundle format", "model and data"},
    # what a mechanism needs from the runtime is passed in as a function (latency=measure_variant_latency)
    "mechanisms": {"device", "base", "graph", "bundle format", "model and data", "mechanisms"},
    "orchestration": {"device", "base", "graph", "bundle format", "runtime", "model and data", "mechanisms",
                      "orchestration"},
    "api": {"device", "base", "graph", "bundle format", "runtime", "model and data", "mechanisms", "orchestration",
            "api"},
    # a command parses arguments, calls the library and prints; it never calls back into the CLI
    "commands": {"device", "base", "graph", "bundle format", "runtime", "model and data", "mechanisms",
                 "orchestration", "api", "commands"},
    "cli": set(),  # filled below: everything
}
MAY_IMPORT["cli"] = set(MAY_IMPORT) - {"cli"} | {"cli"}

# module (or package) -> layer; the longest matching prefix wins; any other toolchain module is a mechanism
LAYER_OF = {
    "mtedge_runtime": "device",
    **dict.fromkeys(["toolchain.errors", "toolchain.imports", "toolchain.progress", "toolchain.tolerance",
                     "toolchain.flops", "toolchain.timing", "toolchain.version", "toolchain.host_latency"], "base"),
    "toolchain.graph": "graph", "toolchain.torch_onnx": "graph",
    "toolchain.bundle": "bundle format",
    "toolchain.runtime": "runtime", "toolchain._runtime": "runtime", "toolchain.bench_runtime": "runtime",
    **dict.fromkeys(["toolchain.recipe", "toolchain.metrics", "toolchain.model", "toolchain.checkpoint",
                     "toolchain.slimmable", "toolchain.zoo", "toolchain.data"], "model and data"),
    **dict.fromkeys(["toolchain.compression", "toolchain.pipeline", "toolchain.scale", "toolchain.demo"],
                    "orchestration"),
    "toolchain": "api",  # the package root: the library API
    "toolchain.commands": "commands", "toolchain.cli": "cli",
}


def layer(module: str) -> str:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in LAYER_OF and (i > 1 or len(parts) == 1 or parts[0] != "toolchain"):
            return LAYER_OF[".".join(parts[:i])]
    return "mechanisms"


def package_dir(root: str) -> Path | None:
    spec = importlib.util.find_spec(root)
    return Path(spec.origin).parent if spec and spec.origin else None


def module_name(path: Path) -> str:
    top = next(p for p in path.parents if p.name in ROOTS)
    parts = list(path.relative_to(top.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = PKG.parent / name.replace(".", "/")
    return base.with_suffix(".py").exists() or base.is_dir() or name == "toolchain._runtime"


def _ours(name: str) -> bool:
    return name.split(".")[0] in ROOTS


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of toolchain or mtedge_runtime, wherever it sits in the file;
    `from toolchain.x import y` names toolchain.x.y when y is a submodule. A module that calls
    importlib.import_module imports every string literal in it that names a toolchain module."""
    tree = ast.parse(path.read_text())
    dynamic = any(isinstance(n, ast.Attribute) and n.attr == "import_module" or
                  isinstance(n, ast.Name) and n.id == "import_module" for n in ast.walk(tree))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if _ours(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _ours(node.module or ""):
            out += [(node.lineno, f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module)
                    for a in node.names]
        elif dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str) and _ours(node.value) \
                and _is_module(node.value):
            out.append((node.lineno, node.value))
    return sorted(set(out))


def sources() -> list[Path]:
    """Every module of toolchain, and of mtedge_runtime once it is installed (the runtime's device
    package; until the packaging change lands it does not exist and is skipped)."""
    return sorted(p for root in ROOTS if (d := package_dir(root)) for p in d.rglob("*.py"))


MODULES = sources()


def violations(path: Path, imports: list[tuple[int, str]]) -> list[str]:
    me = module_name(path)
    return [f"{path.name}:{line} imports {mod} ({layer(mod)})" for line, mod in imports
            if layer(mod) not in MAY_IMPORT[layer(me)]]


def test_every_module_is_seen():
    names = {module_name(p) for p in MODULES}
    assert len(MODULES) > 50 and names >= {"toolchain.export", "toolchain.runtime", "toolchain.cli"}


def test_the_device_package_is_checked_once_installed():
    if package_dir("mtedge_runtime") is None:
        pytest.skip("mtedge_runtime (the runtime's device package) is not installed yet, so none of its modules "
                    "is checked; once it is, it may import only itself")
    assert any(module_name(p).startswith("mtedge_runtime") for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_follow_the_layers(path):
    me = module_name(path)
    bad = violations(path, imported(path))
    assert not bad, (f"{me} ({layer(me)}) may import only {sorted(MAY_IMPORT[layer(me)])}: " + "; ".join(bad)
                     + ". Move the shared code down a layer, or pass it in as a function (see docs/architecture.md)")


def test_the_rule_separates_the_layers():
    assert layer("toolchain.slim.export") == "mechanisms" and layer("toolchain.runtime") == "runtime"
    assert "runtime" not in MAY_IMPORT["mechanisms"] and "mechanisms" not in MAY_IMPORT["runtime"]
    assert "mechanisms" not in MAY_IMPORT["model and data"] and layer("toolchain.checkpoint") == "model and data"
    assert "orchestration" not in MAY_IMPORT["mechanisms"] and layer("toolchain.scale.sweep") == "orchestration"
    assert layer("toolchain.commands.demo") == "commands" and "cli" not in MAY_IMPORT["commands"]
    assert layer("toolchain.bundle.executor") == "bundle format" and "graph" not in MAY_IMPORT["bundle format"]
    assert MAY_IMPORT["device"] == {"device"} and layer("mtedge_runtime.errors") == "device"
    # the lazy loaders' tables count as imports
    assert "toolchain.commands.demo" in {m for _, m in imported(PKG / "cli.py")}
    assert "toolchain.compression" in {m for _, m in imported(PKG / "__init__.py")}


def test_a_planted_lazy_inversion_fails(tmp_path):
    """The parser sees function-local imports and import_module strings, not only the top of a file."""
    planted = tmp_path / "checkpoint.py"
    planted.write_text("import importlib\n\ndef load():\n    from toolchain.slim.convert import convert\n"
                       "    return importlib.import_module('toolchain.scale.sweep')\n")
    found = imported(planted)
    assert found == [(4, "toolchain.slim.convert"), (5, "toolchain.scale.sweep")]
    assert layer("toolchain.checkpoint") == "model and data"
    assert all(layer(m) not in MAY_IMPORT["model and data"] for _, m in found)
