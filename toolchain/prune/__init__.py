"""Structured channel pruning (PAGCP) for multitask networks; see docs/pruning.md."""
