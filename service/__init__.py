"""The batchsync application: config, composition root, HTTP API, sync engine, connectors, state store."""
