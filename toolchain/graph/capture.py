"""Capture a user's multitask network (slices of a Sequential, tuple/dict/namedtuple outputs, config flags)
into one ``torch.fx.GraphModule`` that calls the user's layers by their real paths and returns ``{task: tensor}``.
Why fx and not torch.export, and what is refused: docs/architecture.md, "Capture: one graph from real PyTorch code".
"""

from __future__ import annotations

import copy
import inspect
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.fx as fx
from torch import nn

from toolchain.errors import SpecError

_TORCH_DIR = str(Path(torch.__file__).parent)
_OUR_DIR = str(Path(__file__).resolve().parents[1])


_WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear,
                    nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.PReLU)


class _Tracer(fx.Tracer):
    """fx tracer that calls modules built on the fly (``self.features[:7]``, which plain fx refuses as "not
    installed as a submodule") inline, so each child, one of the model's own layers, keeps its real path."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # A user's subclass of a weighted layer (timm/EfficientNet's Conv2dStaticSamePadding, a
        # Linear with a custom init) is still that layer: record it as one call, so pruning, the
        # partition and the oracle see a Conv2d, not a bare F.conv2d on a parameter.
        return super().is_leaf_module(m, module_qualified_name) or isinstance(m, _WEIGHTED_LAYERS)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        try:
            self.path_of_module(m)
        except NameError:
            if self.is_leaf_module(m, "") and any(True for _ in m.parameters(recurse=False)):
                raise SpecError(
                    f"forward() calls a {type(m).__name__} with weights that is not an attribute of the model "
                    f"(created inside forward?): {_user_frame_text()}; create it in __init__ so its weights are part "
                    "of the model") from None
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)


def capture(model: nn.Module, output_names: Sequence[str | None] | None = None,
            allow_default_names: bool = False, example: torch.Tensor | None = None,
            keep_dead_calls: bool = False) -> fx.GraphModule:
    """The model as a GraphModule returning ``{task: tensor}`` (see the module docstring).

    `output_names` names the model's outputs in their flattened order (a dict's values by key, a
    tuple/list/namedtuple by position, nested containers depth first); ``None`` in it drops that
    output. Without names, dict keys (``a.b`` for nested dicts) and namedtuple fields name the
    outputs; a plain tuple or list needs names unless `allow_default_names` (``out0``, ``out1``...).
    With `example` (an input batch), a channels-last flatten into a Linear is folded into the
    Linear's weights (:func:`fold_permute_flatten`), which edits that Linear: pass a copy.
    Computation no output depends on is dropped (a layer called for its side effect only), unless
    `keep_dead_calls`: the pruning analysis of an uncaptured model must see what its forward runs.
    """
    if is_captured(model):
        return model  # already named at its capture
    was_training = model.training
    model.eval()
    concrete = _default_args(model)
    try:
        graph = _Tracer().trace(model, concrete_args=concrete or None)
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"cannot capture {type(model).__name__}: {_describe(e)}") from None
    finally:
        model.train(was_training)
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__ + "Captured")
    _drop_unused_placeholders(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        names = ", ".join(str(p.target) for p in placeholders)
        raise SpecError(f"{type(model).__name__}.forward takes {len(placeholders)} tensor inputs ({names}); "
                        "a multitask model takes one image batch (give other arguments defaults)")
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    out_node.args = (_name_outputs(type(model).__name__, _flatten_outputs(out_node.args[0]), output_names,
                                   allow_default_names),)
    for n in gm.graph.nodes:
        # forward()'s annotations are strings under `from __future__ import annotations`; fx would
        # put them among the generated code's globals, which then cannot be pickled
        n.type = None
    if not keep_dead_calls:
        gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    if example is not None:
        fold_permute_flatten(gm, example)
    return gm.eval()


def is_captured(model: nn.Module) -> bool:
    """A GraphModule of the captured form: one input, a dict {name: tensor} out (copies and pickles
    of a captured model keep that form, so it is recognized by shape, not by a flag)."""
    if not isinstance(model, fx.GraphModule):
        return False
    nodes = list(model.graph.nodes)
    out = nodes[-1].args[0] if nodes and nodes[-1].op == "output" else None
    return (sum(n.op == "placeholder" for n in nodes) == 1 and isinstance(out, dict) and bool(out)
            and all(isinstance(k, str) and isinstance(v, fx.Node) for k, v in out.items()))


def multitask(model: nn.Module, recipe=None) -> fx.GraphModule:
    """The captured model with the recipe's output names; every recipe task must be an output.

    Idempotent and cheap on a captured model, so every library entry point calls it. A model that
    needs a layout fold (:func:`fold_permute_flatten`) is copied first: the user's model is never
    edited."""
    example = torch.zeros(recipe.input.shape) if recipe is not None else None
    if example is not None and not is_captured(model) and _has_permute(model):
        model = copy.deepcopy(model)
    gm = capture(model, recipe.outputs if recipe is not None else None, example=example)
    if recipe is not None:
        outputs = task_outputs(gm)
        if missing := [t for t in recipe.tasks if t not in outputs]:
            raise SpecError(f"recipe {recipe.name!r} task(s) {', '.join(missing)} are not outputs of the model; "
                            f"it returns: {', '.join(outputs)}")
    return gm


_PERMUTES = ("permute", torch.permute)
_FLATTENS = ("reshape", "view", "flatten", torch.reshape, torch.flatten)


def _has_permute(model: nn.Module) -> bool:
    try:
        gm = capture(model, allow_default_names=True)
    except SpecError:
        return False
    return any(n.target in _PERMUTES for n in gm.graph.nodes if n.op in ("call_method", "call_function"))


def fold_permute_flatten(gm: fx.GraphModule, example: torch.Tensor) -> list[str]:
    """Fold ``x.permute(0, ...).reshape(N, -1)`` feeding a Linear into that Linear's weights.

    A channels-last flatten reorders features; the Linear sees feature ``k`` of the permuted
    layout, which is element ``idx[k]`` of the plain NCHW flatten. Giving the Linear the columns
    ``W'[:, idx] = W`` and flattening NCHW computes the same function, and every pruning tool
    (Torch-Pruning's flatten index mapping, our exactness check) understands the NCHW flatten.
    Returns the Linear layers that were rewritten. Only the exact pattern (4-D input, batch
    dimension kept first, flatten to 2-D, the only user a Linear) is folded; anything else stays
    as traced and the exactness check decides whether its groups may be pruned.
    """
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    folded = []
    for perm in list(gm.graph.nodes):
        if perm.op not in ("call_method", "call_function") or perm.target not in _PERMUTES:
            continue
        src = perm.args[0]
        dims = perm.args[1:] if len(perm.args) > 2 else perm.args[1] if len(perm.args) == 2 else perm.kwargs.get("dims")
        dims = tuple(int(d) for d in dims) if isinstance(dims, (tuple, list)) and all(isinstance(d, int) for d in dims) else None
        shape = _shape(src)
        if dims is None or shape is None or len(shape) != 4 or dims[0] != 0 or sorted(dims) != [0, 1, 2, 3]:
            continue
        for user in list(perm.users):  # `x.shape[0]` of the permuted tensor is the batch size of its input
            if _reads_batch_size_only(user):
                user.replace_input_with(perm, src)
        chain, node = [perm], perm
        while len(node.users) == 1 and next(iter(node.users)).target == "contiguous":
            node = next(iter(node.users))
            chain.append(node)
        if len(node.users) != 1:
            continue
        flat = next(iter(node.users))
        out_shape = _shape(flat)
        if flat.target not in _FLATTENS or out_shape is None or len(out_shape) != 2 or len(flat.users) != 1:
            continue
        linear = next(iter(flat.users))
        layer = gm.get_submodule(str(linear.target)) if linear.op == "call_module" else None
        if not isinstance(layer, nn.Linear):
            continue
        _, c, h, w = shape
        if out_shape[1] != c * h * w or layer.in_features != c * h * w:
            continue
        idx = torch.arange(c * h * w).reshape(1, c, h, w).permute(*dims).reshape(-1)
        with torch.no_grad():
            layer.weight[:, idx] = layer.weight.clone()
        # flatten the NCHW input instead of the permuted one
        flat.replace_input_with(node, src)
        for n in reversed(chain):
            gm.graph.erase_node(n)
        folded.append(str(linear.target))
    if folded:
        gm.graph.lint()
        gm.recompile()
    return folded


def _reads_batch_size_only(node: fx.Node) -> bool:
    """`t.shape` / `t.size()` whose every use is element 0, or `t.size(0)`."""
    if node.op == "call_method" and node.target == "size" and node.args[1:] == (0,):
        return True
    is_shape = (node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",)) or \
        (node.op == "call_method" and node.target == "size" and len(node.args) == 1)
    return is_shape and bool(node.users) and all(
        u.op == "call_function" and u.target.__name__ == "getitem" and u.args[1:] == (0,) for u in node.users)


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def task_outputs(gm: fx.GraphModule) -> dict[str, fx.Node]:
    """Task name -> the node producing it, for a captured GraphModule."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    if not isinstance(out.args[0], dict):
        raise SpecError(f"{type(gm).__name__} is not a captured model: it returns {type(out.args[0]).__name__}, "
                        "not {task: tensor}; capture it first (toolchain.graph.capture.multitask)")
    return dict(out.args[0])


def task_sets(gm: fx.GraphModule, tasks: Sequence[str] | None = None) -> dict[fx.Node, frozenset[str]]:
    """Node -> the tasks (of ``tasks``, default all) whose output depends on it, walking back from each
    output once. Nodes no such task reads are absent. Partition and slimming both read this."""
    deps: dict[fx.Node, set[str]] = {}
    for task, out in task_outputs(gm).items():
        if tasks is None or task in tasks:
            for n in reach([out], keep=lambda n: True, through=lambda n: n.all_input_nodes, stop=False):
                deps.setdefault(n, set()).add(task)
    return {n: frozenset(s) for n, s in deps.items()}


def module_tasks(gm: fx.GraphModule, tasks: Sequence[str] | None = None) -> dict[str, frozenset[str]]:
    """Module name -> the tasks whose output depends on a call of that module."""
    result: dict[str, frozenset[str]] = {}
    for n, s in task_sets(gm, tasks).items():
        if n.op == "call_module":
            result[str(n.target)] = s | result.get(str(n.target), frozenset())
    return result


def trunk_boundary(gm: fx.GraphModule, depends: dict[str, frozenset[str]]) -> list[fx.Node]:
    """Where the task branches leave the shared trunk: calls of modules two or more tasks depend on
    (`depends`: :func:`module_tasks`) whose output a module of a single task reads."""
    def feeds_branch(n: fx.Node) -> bool:
        users = reach(n.users, lambda u: u.op == "call_module",
                      lambda u: u.users if u.op in ("call_function", "call_method") else ())
        return any(len(depends.get(str(u.target), ())) == 1 for u in users)

    return [n for n in gm.graph.nodes
            if n.op == "call_module" and len(depends.get(str(n.target), ())) >= 2 and feeds_branch(n)]


def reach(start: Iterable[fx.Node], keep: Callable[[fx.Node], bool],
          through: Callable[[fx.Node], Iterable[fx.Node]], stop: bool = True) -> list[fx.Node]:
    """The nodes ``keep`` accepts that are reachable from ``start``, looking ``through`` the others
    (e.g. tensor producers behind shape arithmetic, modules behind functional ops); each node once.
    ``stop=False`` looks through the accepted nodes too."""
    found, stack, seen = [], list(start), set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        kept = keep(n)
        if kept:
            found.append(n)
        if not kept or not stop:
            stack.extend(through(n))
    return found


def _default_args(model: nn.Module) -> dict[str, Any]:
    """forward()'s parameters after the first that have defaults: specialized to their defaults."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    concrete = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise SpecError(f"{type(model).__name__}.forward needs argument {p.name!r} besides the image batch; "
                            "give it a default (capture specializes it to that value)")
        concrete[p.name] = p.default
    return concrete


def _drop_unused_placeholders(gm: fx.GraphModule) -> None:
    """Remove the placeholders of specialized forward() arguments and the guards fx adds for them
    (``torch._assert(flag == False)``): once specialized, nothing that reaches the output reads them."""
    for ph in [n for n in gm.graph.nodes if n.op == "placeholder"][1:]:
        downstream = reach([ph], keep=lambda n: True, through=lambda n: n.users, stop=False)
        if any(n.op == "output" for n in downstream):
            continue  # a tensor argument the model really uses: reported by the caller
        for n in sorted(downstream, key=lambda n: -list(gm.graph.nodes).index(n)):
            gm.graph.erase_node(n)


def _flatten_outputs(value: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, leaf) pairs in a fixed order: dict keys as given, sequences by position."""
    if isinstance(value, fx.Node) and value.op == "call_function" and _is_namedtuple_type(value.target):
        # fx records a namedtuple output as a call constructing it
        return _flatten_outputs(value.target(*value.args, **value.kwargs), path)
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _flatten_outputs(v, path + (str(k),))]
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple: its fields name it
        return [leaf for k, v in zip(value._fields, value) for leaf in _flatten_outputs(v, path + (k,))]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value) for leaf in _flatten_outputs(v, path + (f"#{i}",))]
    return [(path, value)]


def _is_namedtuple_type(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, tuple) and hasattr(t, "_fields")


def _name_outputs(model_name: str, leaves: list[tuple[tuple[str, ...], Any]], names: Sequence[str | None] | None,
                  allow_default: bool) -> dict[str, fx.Node]:
    tensors = [(p, v) for p, v in leaves if isinstance(v, fx.Node)]
    if not tensors:
        raise SpecError(f"{model_name}.forward returns no tensor computed from its input")
    found = ", ".join(_default_name(p, i) for i, (p, _) in enumerate(tensors))
    if names is not None:
        names = list(names)
        if len(names) != len(tensors):
            raise SpecError(f"recipe 'outputs' names {len(names)} output(s) but {model_name}.forward returns "
                            f"{len(tensors)} tensor(s) ({found}); list one name per tensor, null to drop one")
        chosen = {n: v for n, (_, v) in zip(names, tensors) if n is not None}
        if len(chosen) != sum(n is not None for n in names):
            raise SpecError(f"recipe 'outputs' repeats a name: {names}")
        return chosen
    if not allow_default and any(not p or any(k.startswith("#") for k in p) for p, _ in tensors):
        raise SpecError(f"{model_name}.forward returns positional outputs ({found}); name them in the recipe, "
                        f"e.g. outputs: [{', '.join(f'task{j}' for j in range(len(tensors)))}] "
                        "(`mtedge recipe init MODEL` writes one)")
    return {_default_name(p, i): v for i, (p, v) in enumerate(tensors)}


def _default_name(path: tuple[str, ...], index: int) -> str:
    """The key path joined by dots (``a.b``); ``out<index>`` for a positional or top-level output."""
    return ".".join(path) if path and not any(k.startswith("#") for k in path) else f"out{index}"


def _describe(e: Exception) -> str:
    """The failing construct and the user's source line for a trace error."""
    text = str(e)
    where = _user_frame_text(e.__traceback__)
    msg = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}" + (f" at {where}" if where else "")
    if "control flow" in text or "iteration" in text or "bool" in text.lower():
        msg += ("; Python decides on a tensor's value or shape there: make the decision a configuration flag "
                "(an attribute or a forward() argument with a default), or move it into a leaf module")
    return msg


def _user_frame_text(tb: Any = None) -> str:
    frames = traceback.extract_tb(tb) if tb is not None else traceback.extract_stack()[:-1]
    user = [f for f in frames if not f.filename.startswith((_TORCH_DIR, _OUR_DIR)) and "<" not in f.filename]
    if not user:
        return ""
    f = user[-1]
    return f"{f.filename}:{f.lineno} `{(f.line or '').strip()}`"
