"""The sync engine: extract → transform → load per chunk, with checkpoints, retries and the run state machine."""
