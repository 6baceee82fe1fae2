"""Traced multitask graphs: tracing, per-node cost, and the partition into task segments."""
