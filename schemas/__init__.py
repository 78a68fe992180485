"""Wire contracts: event models, API bodies, the envelope and topic names. Imports pydantic only."""
