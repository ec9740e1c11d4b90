"""planner's benchmarks: one runner (``python -m bench --help``), every figure a ratio."""
