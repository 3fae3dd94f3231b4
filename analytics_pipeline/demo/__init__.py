"""A deterministic synthetic OLTP dataset, for the demo, tests and benchmarks."""
