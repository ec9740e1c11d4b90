"""planner: a cost-aware batching daemon for LLM APIs."""

__version__ = "0.1.0"
