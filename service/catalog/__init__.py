"""The configuration catalog (connections, batches) and the read side of runs: queries the API serves."""
