"""Connectors: one module per system kind, each a source and a target behind `base.py`'s protocol."""
