"""Runs in the state store: requesting, claiming, leasing, completing, resuming; the outbox."""
