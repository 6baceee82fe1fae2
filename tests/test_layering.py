"""Dependencies point one way (docs/architecture.md, "Layers"): the front end and the runtime both
depend on the bundle format, never on each other; only the CLI and the package root sit on top.
Every import in every module of the installed package is checked, function-local ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import toolchain

PKG = Path(toolchain.__file__).parent

# module (or package) -> layer; the longest matching prefix wins; anything else is the front end
LAYER_OF = {
    "toolchain.errors": "base", "toolchain.imports": "base", "toolchain.progress": "base",
    "toolchain.tolerance": "base", "toolchain.flops": "base", "toolchain.timing": "base",
    "toolchain.version": "base",
    "toolchain.bundle": "bundle format",
    "toolchain.runtime": "runtime", "toolchain._runtime": "runtime", "toolchain.bench_runtime": "runtime",
    "toolchain.commands": "commands", "toolchain.cli": "cli",
    "toolchain": "api",  # the package root: the library API
}
MAY_IMPORT = {
    "base": {"base"},
    "bundle format": {"base", "bundle format"},
    "front end": {"base", "bundle format", "front end"},
    "runtime": {"base", "bundle format", "runtime"},
    "api": {"base", "bundle format", "front end", "runtime", "api"},
    # a command parses arguments and calls the library; it never calls back into the CLI
    "commands": {"base", "bundle format", "front end", "runtime", "api", "commands"},
    "cli": {"base", "bundle format", "front end", "runtime", "api", "commands", "cli"},
}


def layer(module: str) -> str:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in LAYER_OF and (i > 1 or len(parts) == 1):
            return LAYER_OF[".".join(parts[:i])]
    return "front end"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every toolchain import; `from toolchain.x import y` names toolchain.x.y when
    y is a submodule."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "toolchain"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "toolchain":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists() or \
                    (PKG.parent / sub.replace(".", "/")).is_dir()
                out.append((node.lineno, sub if is_module else node.module))
    return out


MODULES = sorted(PKG.rglob("*.py"))


def test_every_module_is_seen():
    assert len(MODULES) > 50 and {module_name(p) for p in MODULES} >= {"toolchain.export", "toolchain.runtime"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_follow_the_layers(path):
    me = module_name(path)
    bad = [f"{path.name}:{line} imports {mod} ({layer(mod)})" for line, mod in imported(path)
           if layer(mod) not in MAY_IMPORT[layer(me)]]
    assert not bad, (f"{me} ({layer(me)}) may import only {sorted(MAY_IMPORT[layer(me)])}: " + "; ".join(bad)
                     + ". Move the shared code down a layer, or pass it in as a function (see docs/architecture.md)")


def test_the_rule_separates_front_end_runtime_and_cli():
    assert layer("toolchain.slim.export") == "front end" and layer("toolchain.runtime") == "runtime"
    assert "runtime" not in MAY_IMPORT["front end"] and "front end" not in MAY_IMPORT["runtime"]
    assert layer("toolchain.commands.demo") == "commands" and "cli" not in MAY_IMPORT["commands"]
    assert layer("toolchain.bundle.executor") == "bundle format" and "front end" not in MAY_IMPORT["bundle format"]
