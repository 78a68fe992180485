"""Metrics, structured logs and traces: what an operator reads about the service (docs/operations.md).

Each module sets up one signal; the parts of the service call the small functions they export, so the
hot path pays a counter increment or a no-op span when nothing is configured.
"""
