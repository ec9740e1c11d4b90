"""The pure core: decisions as functions of values and ``now``; no I/O of any kind."""
