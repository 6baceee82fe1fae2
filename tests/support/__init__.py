"""Small multitask architectures of known shapes, used by tests and benchmarks."""
