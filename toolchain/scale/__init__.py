"""Target sweeps: goals x targets x precisions, cached per point, Pareto fronts (docs/scale-out.md).

    sweep      toolchain.scale.sweep      orchestration over compression, export, quantization and builds

Where the independent evaluations run (this process or Ray workers) is toolchain.workers, a mechanism
the slim grid, the pruning oracle and quantization accuracy control share.
"""
