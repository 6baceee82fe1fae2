"""PAGCP's sequential search (the paper's greedy; toolchain/prune/pagcp.py has the whole algorithm):
one group at a time, a bisection over its keep count per visit. It finds the widest cut each group
affords, at a few oracle evaluations per group visit; the joint search (joint.py) suits large networks."""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import nn

from toolchain.prune.groups import ChannelGroup, channel_groups
from toolchain.prune.importance import channel_scores, lowest
from toolchain.prune.state import SearchState


def keep_candidates(channels: int, m: int, max_step: float, need_flops: float, per_channel: float) -> list[int]:
    """Keep counts to try for a group, most kept first (the first is `channels`: no pruning)."""
    if channels <= m:
        return [channels]
    floor_keep = max(m, m * math.ceil((1.0 - max_step) * channels / m))
    if per_channel > 0 and need_flops > 0:
        # no more than the goal still needs: the most channels kept that still reach it
        goal_keep = max(m, m * math.floor(max(channels - need_flops / per_channel, 0.0) / m))
        floor_keep = max(floor_keep, min(goal_keep, channels))
    keeps = [k for k in range(m * ((channels - 1) // m), floor_keep - 1, -m) if k >= m]
    return [channels, *keeps]


def _priority(config: Any, group: ChannelGroup, flops_per_channel: float,
              latency_per_channel: dict[str, float]) -> float:
    """How early `group` is visited in a round (highest first), by config.order."""
    prunable = max(group.channels - config.round_to, 0)
    if config.order == "flops":
        return flops_per_channel * prunable
    ms = latency_per_channel.get(group.name, 0.0)
    if config.order == "latency":
        return ms * prunable
    return ms / flops_per_channel if flops_per_channel > 0 and prunable else 0.0


def sequential_search(st: SearchState, latency_of: Callable[[nn.Module], float]) -> None:
    config, oracle, example = st.config, st.oracle, st.example
    # carried brackets: group -> keep -> the budget scale its last verdict needed. Drops only grow as
    # other groups are pruned, so a keep that needed more than the current scale is taken as infeasible
    # without evaluating it again (an estimate only: every accepted step is still judged and confirmed)
    known: dict[str, dict[int, float]] = {}
    for rnd in range(config.rounds):
        if st.out_of_time():
            return
        with st.timed("saliency"):
            groups, scores, per_channel = st.saliency(channel_scores)
            order = [g.name for g in sorted(groups, key=lambda g: -_priority(config, g, per_channel[g.name],
                                                                             st.latency_per_channel))]
            current = {g.name: g for g in groups}
        first_need: dict[str, float] = {}  # group -> scale its smallest step needs (blocked groups)
        shrinkable = 0  # groups visited that had a step to try
        steps_before = st.step
        for i, name in enumerate(order):
            st.show(f"round {rnd + 1} budget x{st.scale:.2f} group {i + 1}/{len(order)}", st.flops0 - st.flops_now)
            if st.goal_met() or st.out_of_time():
                break
            g = current.get(name)
            if g is None:
                continue
            keeps = keep_candidates(g.channels, config.round_to, config.max_step, st.need(), per_channel[name])
            if len(keeps) < 2:
                continue
            shrinkable += 1
            rec = known.setdefault(name, {})
            bracket = (next((j for j in range(1, len(keeps)) if rec.get(keeps[j], 0.0) > st.scale), None)
                       if config.carry_brackets else None)
            if bracket == 1:
                st.skipped += 1
                first_need[name] = rec[keeps[1]]
                continue
            s = scores[name] if len(scores[name]) == g.channels else torch.arange(g.channels, dtype=torch.float)
            with st.timed("cache"):
                suffix = oracle.prepare(st.model, g)
            verdicts: dict[int, Any] = {}
            candidates: dict[int, nn.Module] = {}

            def feasible(keep: int) -> bool:
                with st.timed("screen"):
                    cand = copy.deepcopy(st.model)
                    g.prune(cand, lowest(s, g.channels - keep), example=example)
                    v = oracle.judge_all([(cand, suffix)], st.scale)[0]
                rec[keep] = oracle.needed_scale(v.judged)
                verdicts[keep] = v
                if v.ok:
                    candidates.clear()
                    candidates[keep] = cand
                return v.ok

            confirmed = None
            while True:  # a keep that fails confirmation becomes the new upper bracket
                # keeps[lo] feasible (keeps[0]: no pruning); find the last feasible index
                lo, hi = 0, (len(keeps) - 1 if bracket is None else bracket)
                if bracket is None and feasible(keeps[hi]):
                    lo = hi
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (mid, hi) if feasible(keeps[mid]) else (lo, mid)
                if lo == 0:
                    break
                if not oracle.screening and not oracle.margin_z:  # the verdict was the confirmation
                    confirmed = verdicts[keeps[lo]]
                    break
                with st.timed("confirm"):
                    full = oracle.confirm(candidates[keeps[lo]], st.scale)
                if full.ok:
                    confirmed = full
                    break
                rec[keeps[lo]] = max(oracle.needed_scale(full.judged), st.scale * (1 + 1e-6))
                candidates.clear()
                bracket = lo
            if rec.get(keeps[1], 0.0) > st.scale:
                first_need[name] = rec[keeps[1]]
            if confirmed is None:
                continue
            keep = keeps[lo]
            st.accept(candidates[keep], rnd, name, (g.channels, keep), confirmed, verdicts[keep].metrics)
            with st.timed("regroup"):  # the groups are bound to the pruned model's dependency graph: rebuild them
                current = {g.name: g for g in channel_groups(st.model, example, ignored=config.ignored)}
        if st.stopped or st.round_done(rnd, latency_of):
            return
        st.scale *= config.relax
        if st.step == steps_before and first_need and len(first_need) == shrinkable:
            # every group's smallest step is known to need more: jump over the empty rounds
            jump = min(first_need.values())
            if math.isinf(jump):
                st.notes.append(f"round {rnd + 1}: no group can shrink within any budget (the recipe's bounds, or max_relax caps with relax_bounds)")
                return
            st.scale = max(st.scale, jump)
