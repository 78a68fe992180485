"""The run history: a projection of the events topic, rebuilt from it at will (docs/spec.md §6, audit replay)."""
