"""Scale-out: independent evaluations in-process or on Ray workers, and target sweeps (docs/scale-out.md).

    evaluator  toolchain.scale.evaluator  Evaluator.map(fn, items, state): serial or a Ray actor pool
    sweep      toolchain.scale.sweep      goals x targets x precisions, cached per point, Pareto fronts
"""
