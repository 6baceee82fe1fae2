"""PAGCP's joint search: every group's cut decided together, one search per round.

The sequential search costs a few oracle evaluations *per group* a round (hundreds on a 40-group
network at 224x224); the joint search asks one question a round -- how far down one global ranking
of channels (:func:`plan`) the cut can go (:func:`gallop`) -- so a round costs a handful. With
``relax_tasks="binding"`` only the tasks that refused the round's next step relax
(:func:`relax_binding`). docs/pruning.md, "Algorithm as built" step 4 and the per-task budgets.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from toolchain.prune.groups import ChannelGroup, dependency_graph
from toolchain.prune.importance import joint_scores, lowest
from toolchain.prune.oracle import Verdict
from toolchain.prune.sequential import keep_candidates
from toolchain.prune.state import SearchState


@dataclass(frozen=True)
class Block:
    """A run of one group's channels, removed together."""

    group: str
    keep: int  # the group's channels once this block and the group's earlier blocks are removed
    flops: float  # FLOPs it saves (the group's per-channel share; an estimate when coupled groups shrink too)
    ratio: float  # saliency lost per unit of cost: the global order, lowest first


def plan(groups: list[ChannelGroup], scores: dict[str, torch.Tensor], unit_cost: dict[str, float],
         flops_per_channel: dict[str, float], round_to: int, max_step: float) -> list[Block]:
    """Every group's removable blocks in the order the joint search removes them."""
    keyed: list[tuple[float, int, int, Block]] = []
    for gi, g in enumerate(groups):
        unit = unit_cost.get(g.name, 0.0)
        if unit <= 0:
            continue
        ranked = sorted(float(v) for v in scores[g.name])  # the group's channels, least salient first
        prev, floor_ratio = g.channels, 0.0
        for bi, keep in enumerate(keep_candidates(g.channels, round_to, max_step, 0.0, 0.0)[1:]):
            lost = sum(ranked[g.channels - prev : g.channels - keep])
            # never ahead of the group's earlier block: a prefix of the order is a set of valid cuts
            floor_ratio = max(floor_ratio, lost / ((prev - keep) * unit))
            keyed.append((floor_ratio, gi, bi, Block(g.name, keep, (prev - keep) * flops_per_channel[g.name], floor_ratio)))
            prev = keep
    return [b for *_, b in sorted(keyed, key=lambda k: k[:3])]


def keeps_at(blocks: list[Block], prefix: int) -> dict[str, int]:
    """group -> channels kept when the first `prefix` blocks are removed."""
    # a group's blocks come in order: the last one (which a dict keeps) is its smallest keep
    return {b.group: b.keep for b in blocks[:prefix]}


def pruned_copy(model: nn.Module, groups: dict[str, ChannelGroup], keeps: dict[str, int],
                scores: dict[str, torch.Tensor], example: torch.Tensor) -> nn.Module:
    """A copy of `model` with each group cut to its keep count (its least salient channels go)."""
    cand = copy.deepcopy(model)
    graph = dependency_graph(cand, example)  # one graph for all the cuts, as Torch-Pruning's pruners do
    for name, keep in keeps.items():
        g = groups[name]
        g.prune(cand, lowest(scores[name], g.channels - keep), graph=graph)
    return cand


def gallop(judge: Callable[[list[int]], list[bool] | None], first: int, top: int, points: int = 1,
           hi: int | None = None) -> int:
    """The largest prefix in [1, top] the oracle accepts (0 for none), to 1/8 of itself.

    Probes of `points` prefixes each (judged together, e.g. on parallel workers): `first` (and below),
    then doubling while accepted, quartering while refused, then the bracket split into ``points + 1``
    parts; verdicts are read in ascending order up to the first refusal (drops grow with the cut).
    `hi`: a prefix known refused. `judge` returns None to stop (out of time): the best accepted so far
    is returned. The points probed depend only on `points` and the verdicts, not where they ran."""
    lo, hi = 0, (top + 1 if hi is None else hi)
    p = min(max(first, 1), hi - 1)
    probe = [max(1, p // 4**i) for i in range(points)]
    while hi - lo > 1:
        probe = sorted({x for x in probe if lo < x < hi})
        if not probe:
            break
        verdicts = judge(probe)
        if verdicts is None:
            break
        for x, ok in zip(probe, verdicts):
            if not ok:
                hi = x
                break
            lo = x
        if hi > top:  # accepted so far: grow
            probe = [min(top, lo * 2 ** (i + 1)) for i in range(points)]
        elif lo == 0:  # refused so far: shrink fast
            probe = [max(1, hi // 4 ** (i + 1)) for i in range(points)]
        elif hi - lo <= max(1, lo // 8):
            break
        else:
            probe = [lo + (hi - lo) * (i + 1) // (points + 1) for i in range(points)]
    return lo


def joint_search(st: SearchState, latency_of: Callable[[nn.Module], float]) -> None:
    config, oracle, example = st.config, st.oracle, st.example
    last_step = 0.0  # FLOPs the last accepted step removed (the carried step size)
    # groups whose next block broke a bound no budget growth can lift (the recipe's, or max_relax): the
    # search goes on over the others -- one sensitive layer must not end the search for all
    frozen: dict[str, int] = {}
    rnd, counted = -1, 0
    while counted < config.rounds:
        rnd, counted = rnd + 1, counted + 1
        if st.out_of_time():
            return
        with st.timed("saliency"):
            groups, scores, per_flop = st.saliency(joint_scores)
            unit = per_flop if config.order == "flops" else st.latency_per_channel
            blocks = plan([g for g in groups if g.name not in frozen], scores, unit, per_flop, config.round_to,
                          config.max_step)
        if not blocks:
            st.notes.append(f"round {rnd + 1}: no group can shrink further (every group at round_to, refused, or "
                            f"its next cut past a bound: {len(frozen)} such)")
            return
        byname = {g.name: g for g in groups}
        removed = list(itertools.accumulate(b.flops for b in blocks))
        need = st.need()
        top = min(bisect.bisect_left(removed, need) + 1, len(blocks)) if need > 0 else len(blocks)
        first = min(top, bisect.bisect_left(removed, 2 * last_step) + 1) if last_step else top
        verdicts: dict[int, Verdict] = {}
        needed: dict[int, float] = {}
        budget = st.budget
        accepted: dict[int, nn.Module] = {}  # prefix -> its candidate, for every verdict that passed
        exact = not oracle.screening  # verdicts on every oracle image (no confirmation needed)

        def judge(prefixes: list[int]) -> list[bool] | None:
            if st.out_of_time():
                return None
            st.show(f"round {rnd + 1} budget x{st.scale:.2f} joint step {max(prefixes)}/{len(blocks)} blocks",
                    st.flops0 - st.flops_now)
            with st.timed("confirm" if exact else "screen"):
                cands = [pruned_copy(st.model, byname, keeps_at(blocks, p), scores, example) for p in prefixes]
                found = ([oracle.confirm(c, budget) for c in cands] if exact else
                         oracle.judge_all([(c, None) for c in cands], budget, config.evaluator))
            for p, cand, v in zip(prefixes, cands, found):
                verdicts[p], needed[p] = v, oracle.needed_scale(v.judged)
                if v.ok:
                    accepted[p] = cand
            return [v.ok for v in found]

        confirmed, hi, p = None, None, first
        while True:  # a prefix that fails confirmation becomes the upper bound
            lo = gallop(judge, p, top, config.points_per_probe, hi)
            if lo == 0 or st.stopped:
                break
            if exact:
                confirmed = verdicts[lo]
                break
            with st.timed("confirm"):
                full = oracle.confirm(accepted[lo], budget)
            if full.ok:
                confirmed = full
                break
            verdicts[lo] = full  # the exact verdict overrides the screening one it contradicts
            needed[lo] = max(oracle.needed_scale(full.judged), st.scale * (1 + 1e-6))
            # the screening images misjudged this step: the rest of the round judges on all of them
            # (a few exact verdicts cost less than walking the bound down one screened step at a time)
            exact = True
            hi, p = lo, max(1, lo // 2)
        if confirmed is not None:
            widths = {n: (byname[n].channels, k) for n, k in keeps_at(blocks, lo).items()}
            before = st.flops_now
            screened = None if exact and oracle.screening else verdicts[lo].metrics
            st.accept(accepted[lo], rnd, f"joint: {len(widths)} groups", tuple(map(sum, zip(*widths.values()))),
                      confirmed, screened, widths)
            last_step = before - st.flops_now
        if st.stopped or st.round_done(rnd, latency_of):
            return
        if st.task_scales is not None:
            blocked = not relax_binding(st, rnd, verdicts, lo if confirmed is not None else 0)
        else:
            st.scale *= config.relax
            # even the smallest step tried needs more: go straight to the budget that accepts it
            jump = needed[min(needed)] if confirmed is None and needed else 0.0
            blocked = math.isinf(jump)
            if not blocked:
                st.scale = max(st.scale, jump)
        if blocked:
            if not freeze_first_refused(st, rnd, blocks, verdicts, frozen):
                return
            counted -= 1  # a round that only set a group aside does not count against max_rounds


def freeze_first_refused(st: SearchState, rnd: int, blocks: list[Block], verdicts: dict[int, Verdict],
                         frozen: dict[str, int]) -> bool:
    """After a round with no step that no budget can accept: set aside the group of the first refused
    block (the head of the global order), so the next round tries the others. False when none was refused."""
    refused = [p for p, v in verdicts.items() if not v.ok]
    if not refused:
        st.notes.append(f"round {rnd + 1}: no step fits any budget (the recipe's bounds, or max_relax caps with relax_bounds)")
        return False
    group = blocks[min(refused) - 1].group
    frozen[group] = rnd + 1
    st.notes.append(f"round {rnd + 1}: {group}'s next cut is past a bound no budget may exceed; "
                    "the search goes on without that group")
    return True


def relax_binding(st: SearchState, rnd: int, verdicts: dict[int, Verdict], accepted: int) -> bool:
    """Grow the budgets of the tasks that stopped this round (relax_tasks="binding"): the ones the
    first refused prefix past the accepted one failed on. After a round with no step, each of them
    goes straight to the budget that prefix needed. False when one cannot grow (max_relax caps)."""
    oracle, relax = st.oracle, st.config.relax
    past = [p for p, v in verdicts.items() if not v.ok and p > accepted]
    if not past:  # nothing was refused (the round ran out of blocks or time): grow every budget
        st.task_scales = {t: s * relax for t, s in st.task_scales.items()}
    else:
        verdict = verdicts[min(past)]
        binding = oracle.over(verdict.judged, st.task_scales)
        need = oracle.needed_scales(verdict.judged)
        for t in binding:
            grown = st.task_scales[t] * relax
            if accepted == 0:
                if math.isinf(need[t]):
                    st.notes.append(f"round {rnd + 1}: no step fits {t}'s budget (its bound, or its max_relax cap with relax_bounds)")
                    return False
                grown = max(grown, need[t])
            st.task_scales[t] = grown
    st.scale = max(st.task_scales.values())
    return True
