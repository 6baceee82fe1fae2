"""Exact pruning: dead-channel invariance through every layout-changing op (issue 8).

Channels made provably dead (:func:`kill_channels`) and removed through the group's index mapping
must leave every task output unchanged within ``atol``; :func:`check_groups` proves or refuses each
group, and the pruner never prunes a refused one. The property, the costs and the findings:
docs/pruning-exactness.md.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from toolchain.prune.groups import ChannelGroup, dependency_graph

ATOL = 1e-5  # fp32; relative to the output's magnitude when it exceeds 1 (see _tolerance)
SATURATION = 1e4  # pre-activation of a "saturated" dead channel: sigmoid/hardsigmoid/softplus give exactly 0
DEFAULT_DEAD_FRACTIONS = (0.0, 0.5, 1.0)  # one channel, about half, all but one (see dead_counts)
PROBE_BATCH = 2

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


@dataclass(frozen=True)
class CaseResult:
    """One case of the property: `dead` channels of group `group` killed and pruned."""

    group: str
    dead: tuple[int, ...]  # root output channels made dead and removed
    ok: bool
    max_abs_diff: float  # worst task output difference (inf when the pruned model fails)
    task: str | None = None  # the task output that changed most
    layer: str | None = None  # the first consumer (execution order) whose output changed
    kill: str = "zero"  # how the channels were made dead: "zero" or "saturate"
    onnx_max_abs_diff: float | None = None  # onnxruntime on the pruned model vs torch on the dead one
    reason: str = ""  # why the case failed ("" when ok)


@dataclass(frozen=True)
class Refusal:
    """A group the check refuses; ``str()`` is the reason (pagcp prints and records it)."""

    group: str
    reason: str
    layer: str | None
    task: str | None
    max_abs_diff: float

    def __str__(self) -> str:
        return self.reason


@dataclass
class ExactnessResult:
    """`proven`: group root -> the cases that passed (every dead-set size tried).
    `refused`: group root -> :class:`Refusal` (the first failing case)."""

    proven: dict[str, list[CaseResult]] = field(default_factory=dict)
    refused: dict[str, Refusal] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.refused


def dead_counts(channels: int, fractions: Sequence[float] = DEFAULT_DEAD_FRACTIONS) -> list[int]:
    """Dead-set sizes for a group of `channels`: round(f * channels) clamped to [1, channels - 1]
    (so 0.0 means one channel and 1.0 all but one), deduplicated, in the given order."""
    if channels < 2:
        return []
    return list(dict.fromkeys(min(max(int(round(f * channels)), 1), channels - 1) for f in fractions))


def dead_set(channels: int, count: int, seed: int, salt: str = "") -> list[int]:
    """`count` distinct channels out of `channels`, scattered (a mapping off by a block or a stride
    must hit a live channel), reproducible from (seed, salt)."""
    rng = np.random.default_rng([seed, _stable_hash(salt), count])
    return sorted(int(i) for i in rng.choice(channels, size=count, replace=False))


def probe_input(example: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A tiny batch shaped like `example` (at most two samples), drawn from N(0, 1): a constant or
    all-zero example would make whole channels constant and hide a wrong mapping."""
    shape = (min(int(example.shape[0]), PROBE_BATCH), *example.shape[1:])
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=example.device, dtype=example.dtype)


def kill_channels(model: nn.Module, graph, group: ChannelGroup, idxs: Sequence[int], how: str = "zero") -> list[str]:
    """Make root channels `idxs` of `group` dead in `model` (in place) at every layer whose output
    channels are coupled: weights zeroed, biases/betas 0 (``how="zero"``) or -SATURATION
    (``"saturate"``); docs/pruning-exactness.md, "How dead sets are made". `graph`: a dependency graph
    built on `model`. Returns the names of the layers edited."""
    from torch_pruning._helpers import to_plain_idxs

    names = {m: n for n, m in model.named_modules()}
    root = model.get_submodule(group.name)
    tp_group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, list(idxs))
    bias_value = 0.0 if how == "zero" else -SATURATION
    edited: list[str] = []
    with torch.no_grad():
        for dep, hidxs in tp_group:
            mod = dep.target.module
            if not isinstance(mod, nn.Module) or not graph.is_out_channel_pruning_fn(dep.handler):
                continue
            ch = sorted({int(i) for i in to_plain_idxs(hidxs)})
            layer = names.get(mod, type(mod).__name__)
            width = _out_width(mod)
            if ch and width is not None and (ch[-1] >= width or ch[0] < 0):
                raise MappingError(layer, f"root channels {list(idxs)} map to channel {ch[-1]} of {layer}, "
                                          f"which has {width}")
            if _kill_module(mod, ch, bias_value) and layer not in edited:
                edited.append(layer)
    return edited


class MappingError(IndexError):
    """A group's index mapping sends a root channel outside a coupled layer (names the layer)."""

    def __init__(self, layer: str, message: str) -> None:
        super().__init__(message)
        self.layer = layer


def _out_width(mod: nn.Module) -> int | None:
    if isinstance(mod, nn.Linear):
        return mod.weight.shape[0]
    if isinstance(mod, nn.ConvTranspose1d | nn.ConvTranspose2d):
        return mod.weight.shape[1] * mod.groups
    if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return mod.weight.shape[0]
    if isinstance(mod, _NORMS) and getattr(mod, "weight", None) is not None:
        return mod.weight.shape[0]
    return None


def _kill_module(mod: nn.Module, ch: list[int], bias_value: float) -> bool:
    if not ch:
        return False
    idx = torch.tensor(ch, dtype=torch.long)
    if isinstance(mod, nn.ConvTranspose2d | nn.ConvTranspose1d):
        per_out, per_in = mod.out_channels // mod.groups, mod.in_channels // mod.groups
        for o in ch:  # weight [in, out/groups, k...]: output o lives in group o // (out/groups)
            g = o // per_out
            mod.weight[g * per_in:(g + 1) * per_in, o % per_out] = 0
    elif isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
        mod.weight[idx] = 0
    elif isinstance(mod, _NORMS):
        if getattr(mod, "weight", None) is not None:
            mod.weight[idx] = 0
        if getattr(mod, "running_mean", None) is not None:
            mod.running_mean[idx] = 0  # matters only without affine: (0 - 0) / sqrt(var + eps) = 0
    else:
        return False  # PReLU (prelu(0) = 0), pooling, ...: nothing to zero
    if getattr(mod, "bias", None) is not None:
        mod.bias[idx] = bias_value
    return True


def verify_exact(model: nn.Module, example: torch.Tensor, group: ChannelGroup, idxs: Sequence[int], *,
                 atol: float = ATOL, onnx: bool = False, seed: int = 0) -> CaseResult:
    """Check the property for one case: kill root channels `idxs` of `group` on a copy of `model`,
    prune them with ``group.prune``, and compare every task output (torch, and with `onnx` also
    onnxruntime on the pruned model) with the dead, unpruned copy. Tries ``kill="zero"``, then
    ``"saturate"`` (for an f(0) != 0 between producer and consumer). `model` is not modified. Never
    raises for a bad mapping: a prune or forward that fails is a failed case, the error in `reason`."""
    x = probe_input(example, seed)
    first = _case(model, x, group, idxs, "zero", atol, onnx)
    if first.ok or math.isinf(first.max_abs_diff):
        return first
    second = _case(model, x, group, idxs, "saturate", atol, onnx)
    if second.ok:
        return second
    return replace(first, reason=first.reason + "; saturated dead channels (for an f(0) != 0) fail too")


def check_groups(model: nn.Module, example: torch.Tensor, groups: Sequence[ChannelGroup],
                 dead_fractions: Sequence[float] = DEFAULT_DEAD_FRACTIONS, seed: int = 0, *,
                 atol: float = ATOL, onnx: bool = False) -> ExactnessResult:
    """Prove or refuse every group in `groups` (from ``channel_groups(model, example)``): a scattered
    dead set of each size from :func:`dead_counts` is killed and pruned on a copy (:func:`verify_exact`);
    a group is proven when every size passes, refused at the first failure. `model` is not modified;
    `example` gives only the shape."""
    result = ExactnessResult()
    for g in groups:
        cases: list[CaseResult] = []
        for k in dead_counts(g.channels, dead_fractions):
            case = verify_exact(model, example, g, dead_set(g.channels, k, seed, g.name), atol=atol, onnx=onnx, seed=seed)
            if not case.ok:
                result.refused[g.name] = Refusal(g.name, case.reason, case.layer, case.task, case.max_abs_diff)
                break
            cases.append(case)
        else:
            if cases:
                result.proven[g.name] = cases
    return result


# --- one case -------------------------------------------------------------------------------------

def _case(model: nn.Module, x: torch.Tensor, group: ChannelGroup, idxs: Sequence[int], how: str,
          atol: float, onnx: bool) -> CaseResult:
    idxs = tuple(sorted({int(i) for i in idxs}))
    name = group.name
    dead = copy.deepcopy(model).eval()
    graph = dependency_graph(dead, x)

    def failed(reason: str, diff: float = math.inf, task: str | None = None, layer: str | None = None) -> CaseResult:
        return CaseResult(name, idxs, False, diff, task, layer, how, None, reason)

    try:
        kill_channels(dead, graph, group, idxs, how)
    except MappingError as e:  # the group maps a root channel outside a coupled layer's range
        return failed(f"the index mapping of group {name} is wrong at layer {e.layer}: {e}", layer=e.layer)
    except Exception as e:
        return failed(f"making {len(idxs)} channel(s) of {name} dead failed ({type(e).__name__}: {_short(e)})")
    consumers = [n for n in group.in_layers if n not in group.out_layers]  # output shape survives pruning
    ref, ref_inner = _forward(dead, x, consumers)

    try:
        group.prune(dead, idxs, graph=graph)
    except Exception as e:  # a mapping that cannot even be applied is a refusal, not a crash
        return failed(f"pruning {len(idxs)} channel(s) of {name} raised {type(e).__name__}: {_short(e)}")
    try:
        out, out_inner = _forward(dead, x, consumers)
    except Exception as e:
        where, layer = _failing_layer(dead, x)
        return failed(f"after pruning {len(idxs)} channel(s) of {name} the model fails to run {where} {layer or ''} "
                      f"({type(e).__name__}: {_short(e)}): the group's index mapping through "
                      f"{', '.join(consumers) or name} does not match the graph", layer=layer)
    task, diff = _worst(ref, out)
    # execution order (hooks fill the dict as layers run): the first one fed live channels
    inner = ((n, (ref_inner[n] - out_inner[n]).abs().max().item()) for n in ref_inner
             if n in out_inner and ref_inner[n].shape == out_inner[n].shape)
    layer, layer_diff = next(((n, d) for n, d in inner if d > _tolerance(ref_inner[n], atol)), (None, 0.0))
    tol = _tolerance(ref[task], atol) if task is not None else atol
    if diff > tol:
        at = (f"layer {layer} lost live input channels (its output changed by {layer_diff:.3g})" if layer
              else "no consumer's output changed, an op between the group's layers did")
        return failed(f"pruning {len(idxs)} dead channel(s) of {name} changed task '{task}' by {diff:.3g} "
                      f"(> {tol:.1g}): {at}", diff, task, layer)
    onnx_diff = None
    if onnx:
        try:
            onnx_diff = _onnx_diff(dead, x, ref)
        except Exception as e:
            return failed(f"the pruned model (group {name}) fails ONNX export/onnxruntime: {type(e).__name__}: {_short(e)}")
        for t, d in onnx_diff.items():
            if d > _tolerance(ref[t], atol):
                return failed(f"after pruning {name}, onnxruntime differs from torch on task '{t}' by {d:.3g}", d, t)
    return CaseResult(name, idxs, True, diff, task, None, how, max(onnx_diff.values()) if onnx else None, "")


def _forward(model: nn.Module, x: torch.Tensor, watch: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    inner: dict[str, torch.Tensor] = {}
    handles = []
    for n in watch:
        def hook(_m, _i, o, n=n):
            if isinstance(o, torch.Tensor) and n not in inner:  # first call: execution order, one tensor
                inner[n] = o.detach().clone()
        handles.append(model.get_submodule(n).register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, dict):
        out = {"output": out} if isinstance(out, torch.Tensor) else {str(i): o for i, o in enumerate(out)}
    return {t: v.detach().float() for t, v in out.items()}, inner


def _failing_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, str | None]:
    """Where a forward that raises breaks: ("in layer", LAYER) when a module raised, ("after layer",
    LAYER) when an op between modules raised (a view or pixel_shuffle right after LAYER)."""
    running: list[str] = []
    done: list[str] = []
    handles = []
    for n, mod in list(model.named_modules())[1:]:  # the model itself is not a layer
        def enter(_m, _a, n=n) -> None:
            running.append(n)

        def leave(_m, _a, _o, n=n) -> None:  # must return None: a value would replace the output
            running.pop()
            done.append(n)

        handles.append(mod.register_forward_pre_hook(enter))
        handles.append(mod.register_forward_hook(leave))
    try:
        with torch.no_grad():
            model(x)
    except Exception:
        pass
    finally:
        for h in handles:
            h.remove()
    if running:
        return "in layer", running[-1]
    return ("after layer", done[-1]) if done else ("before its first layer", None)


def _worst(ref: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> tuple[str | None, float]:
    worst_task, worst = None, -1.0
    for t, r in ref.items():
        o = out.get(t)
        d = math.inf if o is None or o.shape != r.shape else (r - o).abs().max().item()
        if not math.isfinite(d) or d > worst:  # nan/inf outputs count as changed
            worst_task, worst = t, (d if math.isfinite(d) else math.inf)
            if math.isinf(worst):
                break
    return worst_task, max(worst, 0.0)


def _tolerance(ref: torch.Tensor, atol: float) -> float:
    # fp32 sums of a different length round differently: allow atol per unit of output magnitude
    return atol * max(1.0, float(ref.abs().max().item()) if ref.numel() else 1.0)


def _onnx_diff(model: nn.Module, x: torch.Tensor, ref: dict[str, torch.Tensor]) -> dict[str, float]:
    from toolchain.bundle.executor import ort_session
    from toolchain.torch_onnx import onnx_bytes

    tasks = list(ref)
    outs = ort_session(onnx_bytes(model.eval(), (x,), ["image"], tasks)).run(tasks, {"image": x.numpy()})
    return {t: float(np.abs(ref[t].numpy() - o).max()) for t, o in zip(tasks, outs)}


def _short(e: BaseException, n: int = 160) -> str:
    s = " ".join(str(e).split())
    return s if len(s) <= n else s[: n - 3] + "..."


def _stable_hash(s: str) -> int:
    h = 2166136261  # FNV-1a: str hash() is salted per process, dead sets must be reproducible
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h
