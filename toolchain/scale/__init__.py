"""Target sweeps (toolchain.scale.sweep): goals x targets x precisions, cached per point, Pareto fronts
(docs/scale-out.md). Where evaluations run, this process or Ray workers, is toolchain.workers."""
