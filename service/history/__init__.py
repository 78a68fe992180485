"""The run history: a projection of the events topic, rebuilt from it at will (SPEC §6)."""
