"""Runs that start by themselves (docs/spec.md §9): schedules and the retry policy.

`fires` computes fire times (pure), `schedules` fires due schedules, `retries` resumes runs that failed on a
transient error, and `scheduler` is the loop `batchsync scheduler` runs. Every decision is taken in the state
store under the batch's row lock, and every request it publishes has a deterministic `requestId`, so any number
of schedulers fire each time once.
"""
