"""Run notifications (docs/spec.md §9): a run's `BatchSyncCompleted`, POSTed and signed to the batch's `notify`
address (or `BATCHSYNC_NOTIFY_URL`), with retries and a delivery log per run.

Driven from the events topic, never from inside the run: `consumers/notifier.py` reads each Completed event and
records the deliveries it calls for (`deliveries`), and the `sender` works through them, so a slow or failing
receiver never delays or fails a run.
"""
